//! Group commit: writes that arrive together share one transaction, and each writer is answered
//! only after that transaction committed.
//!
//! The first writer to find no group being written becomes the leader: it takes every write waiting
//! at that moment (its own included, up to a limit) and stores them with its own connection, while
//! the writes arriving meanwhile wait for the next group, which the first of them leads once this
//! one is done. A lone write therefore never waits for company: on an idle server it is the leader
//! of a group of one at once. Under load, groups grow by themselves to what arrives during one
//! commit. The leader uses the connection its caller already holds, so a group never waits for a
//! pool connection that its own followers hold.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::thread::Thread;

use diesel::result::QueryResult;

/// A group commit of jobs `J` answered with `R` (see the module documentation), written with a
/// connection `C` (a [`super::DbConnection`]).
///
/// Waiting writers park their threads; a leader that is done wakes exactly the writers of its group
/// and the next leader, not every waiting thread (with 32 senders, waking all of them for every
/// group cost more than the group saved).
pub struct GroupCommit<J, R> {
    queue: Mutex<Queue<J, R>>,
    /// The most jobs one group takes, and the most weight (see [`GroupCommit::submit`]).
    max_jobs: usize,
    max_weight: usize,
}

struct Queue<J, R> {
    next_ticket: u64,
    /// Waiting jobs, oldest first.
    pending: VecDeque<Waiting<J>>,
    /// Answers not yet taken by their writer.
    answers: HashMap<u64, QueryResult<R>>,
    /// A leader is storing a group.
    leading: bool,
}

/// A job waiting for a group, with its ticket, its weight and its writer's thread (to wake it).
struct Waiting<J> {
    ticket: u64,
    weight: usize,
    job: J,
    writer: Thread,
}

impl<J, R> GroupCommit<J, R> {
    /// A group takes at most `max_jobs` jobs and, beyond its first, at most `max_weight` in total
    /// weight (the caller's measure of a job's size, e.g. its lines), so one transaction stays short.
    pub fn new(max_jobs: usize, max_weight: usize) -> GroupCommit<J, R> {
        GroupCommit {
            queue: Mutex::new(Queue {
                next_ticket: 0,
                pending: VecDeque::new(),
                answers: HashMap::new(),
                leading: false,
            }),
            max_jobs: max_jobs.max(1),
            max_weight,
        }
    }

    /// Stores `job` in a group and returns its answer once the group's transaction is over. `store`
    /// writes one group with the leader's connection and returns one answer per job, in order; it
    /// is run by whichever writer leads, so it must not depend on whose job it is.
    pub fn submit<C>(
        &self,
        conn: &mut C,
        job: J,
        weight: usize,
        store: impl Fn(&mut C, Vec<J>) -> Vec<QueryResult<R>>,
    ) -> QueryResult<R> {
        let mut queue = self.lock();
        let ticket = queue.next_ticket;
        queue.next_ticket += 1;
        queue.pending.push_back(Waiting {
            ticket,
            weight,
            job,
            writer: std::thread::current(),
        });
        loop {
            if let Some(answer) = queue.answers.remove(&ticket) {
                return answer;
            }
            // No group is being written, so this job has not been taken: lead the next group.
            if !queue.leading {
                self.lead(queue, conn, &store);
            } else {
                drop(queue);
                // Woken when this job's answer is posted or when it may lead (or spuriously).
                std::thread::park();
            }
            queue = self.lock();
        }
    }

    /// Takes the waiting jobs, stores them unlocked, posts their answers, steps down and wakes the
    /// group's writers and the next leader.
    fn lead<C>(
        &self,
        mut queue: MutexGuard<'_, Queue<J, R>>,
        conn: &mut C,
        store: &impl Fn(&mut C, Vec<J>) -> Vec<QueryResult<R>>,
    ) {
        queue.leading = true;
        let (writers, jobs) = self.take_group(&mut queue);
        drop(queue);
        let mut leader = Leader {
            group: self,
            writers,
            answered: false,
        };
        let answers = store(conn, jobs);
        leader.post(answers);
    }

    /// The oldest waiting jobs, within the group's limits, and their writers.
    fn take_group(&self, queue: &mut Queue<J, R>) -> (Vec<(u64, Thread)>, Vec<J>) {
        let (mut writers, mut jobs, mut weight) = (Vec::new(), Vec::new(), 0);
        while let Some(w) = queue.pending.pop_front() {
            let full = jobs.len() >= self.max_jobs || weight + w.weight > self.max_weight;
            if !jobs.is_empty() && full {
                queue.pending.push_front(w);
                break;
            }
            weight += w.weight;
            writers.push((w.ticket, w.writer));
            jobs.push(w.job);
        }
        (writers, jobs)
    }

    fn lock(&self) -> MutexGuard<'_, Queue<J, R>> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A leader's duty to answer its group, step down and wake who must act, even if storing the
/// group panicked: otherwise its writers and every later one would wait for ever.
struct Leader<'g, J, R> {
    group: &'g GroupCommit<J, R>,
    writers: Vec<(u64, Thread)>,
    answered: bool,
}

impl<J, R> Leader<'_, J, R> {
    fn post(&mut self, answers: Vec<QueryResult<R>>) {
        let mut answers = answers.into_iter();
        self.finish(|| {
            answers
                .next()
                .unwrap_or_else(|| Err(lost("gave no answer")))
        });
    }

    fn finish(&mut self, mut answer: impl FnMut() -> QueryResult<R>) {
        let mut queue = self.group.lock();
        let mut wake: Vec<Thread> = Vec::with_capacity(self.writers.len() + 1);
        for (ticket, writer) in self.writers.drain(..) {
            queue.answers.insert(ticket, answer());
            wake.push(writer);
        }
        queue.leading = false;
        wake.extend(queue.pending.front().map(|next| next.writer.clone()));
        self.answered = true;
        drop(queue);
        for writer in wake {
            writer.unpark();
        }
    }
}

impl<J, R> Drop for Leader<'_, J, R> {
    fn drop(&mut self) {
        if !self.answered {
            self.finish(|| Err(lost("panicked")));
        }
    }
}

/// The answer of a job whose group's writer failed without an answer for it: nothing of it is
/// known to be stored, so its sender is told it was not received.
fn lost(what: &str) -> diesel::result::Error {
    diesel::result::Error::QueryBuilderError(
        format!("the group commit's writer {what}; this message was not stored").into(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_stops_at_its_limits_but_always_takes_one() {
        let group: GroupCommit<u32, ()> = GroupCommit::new(3, 10);
        let mut queue = group.lock();
        for (ticket, weight) in [(0, 20), (1, 4), (2, 4), (3, 4), (4, 1)] {
            queue.pending.push_back(Waiting {
                ticket,
                weight,
                job: ticket as u32,
                writer: std::thread::current(),
            });
        }
        assert_eq!(group.take_group(&mut queue).1, vec![0]);
        assert_eq!(group.take_group(&mut queue).1, vec![1, 2]);
        assert_eq!(group.take_group(&mut queue).1, vec![3, 4]);
        assert!(group.take_group(&mut queue).1.is_empty());
    }

    #[test]
    fn every_writer_gets_its_own_answer_and_writers_arriving_together_share_a_group() {
        use std::sync::{Arc, Barrier};
        let group: Arc<GroupCommit<u32, u32>> = Arc::new(GroupCommit::new(100, 1000));
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let start = Arc::new(Barrier::new(16));
        let writers: Vec<_> = (0..16u32)
            .map(|n| {
                let (group, sizes, start) = (group.clone(), sizes.clone(), start.clone());
                std::thread::spawn(move || {
                    start.wait();
                    let mut writes = 0u32;
                    let answer = group.submit(&mut writes, n, 1, |writes, jobs| {
                        *writes += 1;
                        sizes.lock().unwrap().push(jobs.len());
                        // A commit's duration, during which the others arrive.
                        std::thread::sleep(std::time::Duration::from_millis(50));
                        jobs.into_iter().map(|j| Ok(j * 10)).collect()
                    });
                    (n, answer.unwrap(), writes)
                })
            })
            .collect();
        let answers: Vec<(u32, u32, u32)> =
            writers.into_iter().map(|w| w.join().unwrap()).collect();
        for (n, answer, _) in &answers {
            assert_eq!(*answer, n * 10);
        }
        let sizes = sizes.lock().unwrap();
        assert_eq!(
            sizes.iter().sum::<usize>(),
            16,
            "each job stored once: {sizes:?}"
        );
        assert!(sizes.len() < 16, "no group of more than one: {sizes:?}");
        let leaders = answers.iter().filter(|a| a.2 > 0).count();
        assert_eq!(
            leaders,
            sizes.len(),
            "each group written by one of its writers"
        );
    }

    #[test]
    fn a_lone_writer_writes_at_once_and_a_panicking_leader_fails_only_its_group() {
        let group: GroupCommit<u32, u32> = GroupCommit::new(10, 10);
        assert_eq!(
            group
                .submit(&mut (), 4, 1, |_, jobs| jobs
                    .into_iter()
                    .map(|j| Ok(j + 1))
                    .collect())
                .unwrap(),
            5
        );
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            group.submit(&mut (), 1, 1, |_, _| -> Vec<QueryResult<u32>> {
                panic!("store failed")
            })
        }));
        assert!(panicked.is_err());
        let after = group.submit(&mut (), 7, 1, |_, jobs| {
            jobs.into_iter().map(|j| Ok(j * 2)).collect()
        });
        assert_eq!(after.unwrap(), 14, "the next writer leads again");
    }
}
