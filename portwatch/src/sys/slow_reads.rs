//! Reads another user can make block for as long as they like: a
//! process's environment (a read of its memory, which a mapping of a file
//! on its own FUSE mount can hold up forever) and the search for its git
//! work tree (lookups on filesystems a user may serve). They run on one
//! thread of their own, each with a deadline; while one is stuck the next
//! are not tried (their answer is "not read"), so at most one thread is
//! ever held, and the monitor waits at most one deadline per stuck read.

use std::{
    sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, TryRecvError},
    time::Duration,
};

/// How long an answer is waited for. A read that takes longer is given
/// up (it finishes, or not, on its thread).
pub(crate) const DEADLINE: Duration = Duration::from_millis(50);

/// The thread's two ends: requests to it, answers from it (by number).
type Ends<Q, A> = (Sender<(u64, Q)>, Receiver<(u64, A)>);

/// One thread doing `work` for the caller, a request at a time.
pub(crate) struct SlowReads<Q, A> {
    work: fn(Q) -> A,
    thread: Option<Ends<Q, A>>,
    /// The request whose answer is late, if one is.
    late: Option<u64>,
    next: u64,
}

impl<Q: Send + 'static, A: Send + 'static> SlowReads<Q, A> {
    pub(crate) fn new(work: fn(Q) -> A) -> Self {
        Self {
            work,
            thread: None,
            late: None,
            next: 0,
        }
    }

    /// `work(request)`, or None when it did not answer within
    /// [`DEADLINE`], or an earlier request is still stuck.
    pub(crate) fn ask(&mut self, request: Q) -> Option<A> {
        if self.thread.is_none() {
            let (to_thread, requests) = mpsc::channel::<(u64, Q)>();
            let (answer, answers) = mpsc::channel();
            let work = self.work;
            let spawned = std::thread::Builder::new()
                .name("portwatch-reads".into())
                .spawn(move || {
                    for (id, q) in requests {
                        if answer.send((id, work(q))).is_err() {
                            break;
                        }
                    }
                });
            if spawned.is_err() {
                return None;
            }
            self.thread = Some((to_thread, answers));
        }
        let (to_thread, answers) = self.thread.as_ref()?;
        if let Some(late) = self.late {
            // Still stuck: this one is not tried.
            match answers.try_recv() {
                Ok((id, _)) if id == late => self.late = None,
                Ok(_) | Err(TryRecvError::Empty) => return None,
                Err(TryRecvError::Disconnected) => {
                    self.thread = None;
                    return None;
                }
            }
        }
        let id = self.next;
        self.next += 1;
        to_thread.send((id, request)).ok()?;
        match answers.recv_timeout(DEADLINE) {
            Ok((got, answer)) if got == id => Some(answer),
            Ok(_) => None,
            Err(RecvTimeoutError::Timeout) => {
                self.late = Some(id);
                None
            }
            Err(RecvTimeoutError::Disconnected) => {
                self.thread = None;
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Mutex, mpsc::SyncSender};

    use super::*;

    /// The stuck read's release: it waits on this until the test sends.
    static RELEASE: Mutex<Option<Receiver<()>>> = Mutex::new(None);

    fn work(q: u32) -> u32 {
        if q == 0 {
            // Stuck until released, as a read of a FUSE-backed page is.
            let rx = RELEASE.lock().unwrap().take();
            if let Some(rx) = rx {
                let _ = rx.recv();
            }
        }
        q * 2
    }

    #[test]
    fn a_stuck_read_is_given_up_and_the_next_are_not_tried_until_it_ends() {
        let (release, rx): (SyncSender<()>, _) = mpsc::sync_channel(1);
        *RELEASE.lock().unwrap() = Some(rx);
        let mut reads = SlowReads::new(work);
        assert_eq!(reads.ask(3), Some(6));
        assert_eq!(reads.ask(0), None, "stuck: given up");
        // While it is stuck, it is not tried: the answer is "not read".
        assert_eq!(reads.ask(4), None);
        release.send(()).unwrap();
        // Once it ended, reads go on (its late answer is dropped).
        let mut again = None;
        for _ in 0..100 {
            again = reads.ask(5);
            if again.is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(again, Some(10));
    }
}
