//! Tells when a file changes, through inotify on its directory: editors
//! and `alerts init` replace a file by renaming over it, which a watch on
//! the file itself would miss.

use std::{
    ffi::OsString,
    io,
    path::{Path, PathBuf},
    pin::Pin,
    task::{Context, Poll},
};

use inotify::{EventStream, Inotify, WatchMask};

pub(crate) struct FileWatch {
    events: EventStream<Vec<u8>>,
    name: Option<OsString>,
}

impl FileWatch {
    pub(crate) fn new(path: &Path) -> io::Result<Self> {
        let dir: PathBuf = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let inotify = Inotify::init()?;
        inotify.watches().add(
            &dir,
            WatchMask::CLOSE_WRITE | WatchMask::MOVED_TO | WatchMask::CREATE,
        )?;
        Ok(Self {
            events: inotify.into_event_stream(vec![0u8; 4096])?,
            name: path.file_name().map(|n| n.to_os_string()),
        })
    }

    /// Ready when the file itself changed. Cancel-safe.
    pub(crate) fn poll_changed(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            match futures_core::Stream::poll_next(Pin::new(&mut self.events), cx) {
                Poll::Ready(Some(Ok(ev))) if ev.name.is_some() && ev.name == self.name => {
                    return Poll::Ready(Ok(()));
                }
                Poll::Ready(Some(Ok(_))) => continue,
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(e)),
                Poll::Ready(None) => {
                    return Poll::Ready(Err(io::Error::other("inotify stopped")));
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}
