//! The library API: PortWatcher with a callback, and the event stream.

use std::{net::TcpListener, pin::Pin, sync::mpsc, time::Duration};

use portwatch::{
    EngineConfig, Error, Filter,
    watcher::{Port, PortChange, PortWatcher, watch},
};

#[test]
fn port_watcher_calls_back_for_this_process() {
    let (tx, rx) = mpsc::channel();
    let mut watcher = PortWatcher::new(std::process::id(), move |change| {
        let _ = tx.send(change);
    })
    .unwrap();
    watcher.start().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = Port {
        port: listener.local_addr().unwrap().port(),
        pid: std::process::id(),
        address: "127.0.0.1".parse().unwrap(),
    };
    let next = |what| loop {
        match rx.recv_timeout(Duration::from_secs(1)) {
            Ok(change) if change == what => return,
            Ok(_) => continue,
            Err(e) => panic!("no {what:?}: {e}"),
        }
    };
    next(PortChange::Opened(port.clone()));
    drop(listener);
    next(PortChange::Closed(port));
    watcher.stop();
}

#[test]
fn port_watcher_refuses_an_unknown_pid() {
    match PortWatcher::new(4_194_305, |_| {}) {
        Err(Error::NoSuchProcess(4_194_305)) => {}
        other => panic!("expected NoSuchProcess, got {:?}", other.err()),
    }
}

#[test]
fn stream_yields_events() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let config = EngineConfig {
            filter: Filter {
                pid: Some(std::process::id()),
                ..Filter::default()
            },
            ..EngineConfig::default()
        };
        let mut stream = watch(config).unwrap();
        let listener = TcpListener::bind("[::1]:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let next = async {
            loop {
                let ev = std::future::poll_fn(|cx| {
                    futures_core::Stream::poll_next(Pin::new(&mut stream), cx)
                })
                .await
                .expect("stream ended")
                .expect("watch error");
                if ev.listener.port == port {
                    return ev;
                }
            }
        };
        let ev = tokio::time::timeout(Duration::from_secs(1), next)
            .await
            .expect("an event within 1 s");
        assert_eq!(ev.listener.pid, std::process::id());
        assert_eq!(ev.change, portwatch::Change::Opened);
    });
}
