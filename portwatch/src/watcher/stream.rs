//! Every event of a watch as an async stream, for tokio users.

use std::{
    pin::Pin,
    task::{Context, Poll},
};

use crate::{
    engine::EngineConfig,
    error::Result,
    event::PortEvent,
    monitor::{Monitor, MonitorConfig, MonitorEvent},
};

/// Every event of a watch as an async stream: first the baseline, then
/// live changes. Must be called inside a tokio runtime. The kernel's ring
/// buffer is read as the stream is polled: a consumer that falls behind
/// makes the kernel drop events, which a resync then repairs. The watch
/// stops when the stream is dropped.
pub fn watch(config: EngineConfig) -> Result<EventStream> {
    let monitor = Monitor::start(MonitorConfig {
        engine: config,
        ..MonitorConfig::default()
    })?;
    Ok(EventStream {
        state: StreamState::Idle(Box::new(monitor)),
    })
}

type NextEvent = Pin<Box<dyn Future<Output = (Box<Monitor>, Result<MonitorEvent>)> + Send>>;

/// See [`watch`].
pub struct EventStream {
    state: StreamState,
}

enum StreamState {
    Idle(Box<Monitor>),
    /// Waiting for the monitor's next event; the future owns the monitor
    /// until it is ready.
    Waiting(NextEvent),
    /// Stopped by an error.
    Done,
}

impl futures_core::Stream for EventStream {
    type Item = Result<PortEvent>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            match std::mem::replace(&mut self.state, StreamState::Done) {
                StreamState::Done => return Poll::Ready(None),
                StreamState::Idle(mut monitor) => {
                    self.state = StreamState::Waiting(Box::pin(async move {
                        let next = monitor.next().await;
                        (monitor, next)
                    }));
                }
                StreamState::Waiting(mut next) => match next.as_mut().poll(cx) {
                    Poll::Pending => {
                        self.state = StreamState::Waiting(next);
                        return Poll::Pending;
                    }
                    Poll::Ready((monitor, Ok(MonitorEvent::Port(ev)))) => {
                        self.state = StreamState::Idle(monitor);
                        return Poll::Ready(Some(Ok(ev)));
                    }
                    Poll::Ready((monitor, Ok(_))) => self.state = StreamState::Idle(monitor),
                    Poll::Ready((_, Err(e))) => return Poll::Ready(Some(Err(e))),
                },
            }
        }
    }
}
