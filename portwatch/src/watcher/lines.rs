//! The daemon's lines, each read whole and at most [`MAX_LINE`] bytes long,
//! so that a peer that is no portwatch daemon cannot make a watcher
//! allocate without limit.

use std::io::{Error, ErrorKind};

use tokio::io::{AsyncBufRead, AsyncBufReadExt as _};

/// The longest line accepted, as `watch --connect` accepts: an event is a
/// few hundred bytes to a few KiB with its owner's context (whose texts
/// are capped), and a line this long is still no memory to speak of.
pub(crate) const MAX_LINE: usize = 1024 * 1024;

/// Lines of a byte stream.
pub(crate) struct Lines<R> {
    reader: R,
    /// The part of a line read so far: kept here, so that a read
    /// cancelled (a `select!` that took another branch) loses nothing.
    partial: Vec<u8>,
    max: usize,
}

impl<R: AsyncBufRead + Unpin> Lines<R> {
    pub(crate) fn new(reader: R) -> Self {
        Self::with_max(reader, MAX_LINE)
    }

    pub(crate) fn with_max(reader: R, max: usize) -> Self {
        Self {
            reader,
            partial: Vec::new(),
            max,
        }
    }

    /// The next line, without its newline; None at the end of the stream.
    /// `InvalidData` for a line too long or not UTF-8, `UnexpectedEof`
    /// for a last line cut off. Cancel-safe.
    pub(crate) async fn next_line(&mut self) -> std::io::Result<Option<String>> {
        loop {
            let available = self.reader.fill_buf().await?;
            if available.is_empty() {
                return if self.partial.is_empty() {
                    Ok(None)
                } else {
                    Err(Error::new(
                        ErrorKind::UnexpectedEof,
                        "the daemon's last line is cut off",
                    ))
                };
            }
            let (take, end) = match available.iter().position(|&b| b == b'\n') {
                Some(i) => (i + 1, Some(i)),
                None => (available.len(), None),
            };
            let body = available.get(..end.unwrap_or(take)).unwrap_or_default();
            // What is kept never passes the limit by more than one read.
            if self.partial.len() + body.len() > self.max {
                self.partial = Vec::new();
                return Err(Error::new(
                    ErrorKind::InvalidData,
                    format!("the daemon sent a line longer than {} bytes", self.max),
                ));
            }
            self.partial.extend_from_slice(body);
            self.reader.consume(take);
            if end.is_some() {
                let bytes = std::mem::take(&mut self.partial);
                return String::from_utf8(bytes).map(Some).map_err(|_| {
                    Error::new(
                        ErrorKind::InvalidData,
                        "the daemon sent a line that is no UTF-8",
                    )
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines_of(bytes: &'static [u8], max: usize) -> Lines<&'static [u8]> {
        Lines::with_max(bytes, max)
    }

    #[tokio::test]
    async fn lines_are_read_whole_and_the_end_is_none() {
        let mut lines = lines_of(b"{}\n\nabc\n", 16);
        assert_eq!(lines.next_line().await.unwrap().as_deref(), Some("{}"));
        assert_eq!(lines.next_line().await.unwrap().as_deref(), Some(""));
        assert_eq!(lines.next_line().await.unwrap().as_deref(), Some("abc"));
        assert_eq!(lines.next_line().await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_line_too_long_is_refused_before_it_is_kept() {
        // No newline at all: refused at the limit, not at the end.
        let endless = vec![b'x'; 1 << 20];
        let mut lines = Lines::with_max(tokio::io::BufReader::with_capacity(64, &endless[..]), 100);
        let e = lines.next_line().await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidData);
        assert!(e.to_string().contains("longer than 100 bytes"), "{e}");
        assert!(
            lines.partial.capacity() <= 200,
            "{}",
            lines.partial.capacity()
        );
        // Exactly the limit is a line.
        let mut exact = lines_of(b"0123456789\n", 10);
        assert_eq!(exact.next_line().await.unwrap().unwrap().len(), 10);
        assert_eq!(MAX_LINE, 1 << 20);
    }

    #[tokio::test]
    async fn a_cut_line_and_bytes_that_are_no_text_are_errors() {
        let e = lines_of(b"{\"event\"", 64).next_line().await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::UnexpectedEof);
        let e = lines_of(b"\xff\xfe\n", 64).next_line().await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidData);
    }
}
