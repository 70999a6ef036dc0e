//! Reads another user can make block for as long as they like: a
//! process's environment and arguments (reads of its memory, which a mapping of a file
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
        self.ask_all(vec![request]).pop().flatten()
    }

    /// [`Self::ask`] of each request, all sent at once: the thread works
    /// through them while the caller waits for the answers in turn, each
    /// within [`DEADLINE`] of the one before; once one is late, the rest
    /// are None.
    pub(crate) fn ask_all(&mut self, requests: Vec<Q>) -> Vec<Option<A>> {
        let n = requests.len();
        let mut answers: Vec<Option<A>> = (0..n).map(|_| None).collect();
        if n == 0 || !self.ready() {
            return answers;
        }
        let Some((to_thread, from_thread)) = self.thread.as_ref() else {
            return answers;
        };
        let first = self.next;
        for q in requests {
            let id = self.next;
            self.next += 1;
            if to_thread.send((id, q)).is_err() {
                self.thread = None;
                return answers;
            }
        }
        let last = self.next - 1;
        loop {
            match from_thread.recv_timeout(DEADLINE) {
                Ok((id, a)) => {
                    if let Some(slot) = id
                        .checked_sub(first)
                        .and_then(|i| usize::try_from(i).ok())
                        .and_then(|i| answers.get_mut(i))
                    {
                        *slot = Some(a);
                    }
                    if id == last {
                        return answers;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    // Stuck: nothing is tried until the last one sent is
                    // answered (the thread works through them in order).
                    self.late = Some(last);
                    return answers;
                }
                Err(RecvTimeoutError::Disconnected) => {
                    self.thread = None;
                    return answers;
                }
            }
        }
    }

    /// Whether the thread runs and is not stuck (started if need be).
    fn ready(&mut self) -> bool {
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
                return false;
            }
            self.thread = Some((to_thread, answers));
        }
        let Some(late) = self.late else {
            return true;
        };
        let Some((_, from_thread)) = self.thread.as_ref() else {
            return false;
        };
        // Still stuck, unless the late answers came (dropped: too late).
        loop {
            match from_thread.try_recv() {
                Ok((id, _)) if id == late => {
                    self.late = None;
                    return true;
                }
                Ok(_) => {}
                Err(TryRecvError::Empty) => return false,
                Err(TryRecvError::Disconnected) => {
                    self.thread = None;
                    self.late = None;
                    return false;
                }
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

    #[test]
    fn many_are_asked_at_once_and_a_stuck_one_ends_the_batch() {
        let (release, rx): (SyncSender<()>, _) = mpsc::sync_channel(1);
        let mut reads = SlowReads::new(work_too);
        assert_eq!(reads.ask_all(vec![1, 2, 3]), [Some(2), Some(4), Some(6)]);
        *RELEASE_TOO.lock().unwrap() = Some(rx);
        assert_eq!(reads.ask_all(vec![1, 0, 2]), [Some(2), None, None]);
        assert_eq!(reads.ask_all(vec![5]), [None], "still stuck");
        release.send(()).unwrap();
        let mut again = vec![None];
        for _ in 0..100 {
            again = reads.ask_all(vec![5]);
            if again[0].is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(again, [Some(10)]);
    }

    static RELEASE_TOO: Mutex<Option<Receiver<()>>> = Mutex::new(None);

    fn work_too(q: u32) -> u32 {
        if q == 0 {
            let rx = RELEASE_TOO.lock().unwrap().take();
            if let Some(rx) = rx {
                let _ = rx.recv();
            }
        }
        q * 2
    }
}
