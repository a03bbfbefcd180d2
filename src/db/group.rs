//! Group commit: writes that arrive together share one transaction, and each writer is answered
//! only after that transaction committed.
//!
//! Writers hand their job to one committer thread and wait for its answer without holding a thread
//! or a connection (`submit` is async). The committer takes every job waiting when it is free, up
//! to a limit, stores them with one connection in one transaction, answers each writer, and takes
//! the next group. A lone job never waits for company: an idle committer takes it at once. Under
//! load, groups grow by themselves to what arrives during one commit.
//!
//! Everything else a write needs (reading, parsing, hashing) is done by the writer's own thread
//! beforehand: only the storing is serialised, and a call costs no hop to a blocking thread and no
//! pool checkout of its own.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex, PoisonError, mpsc};

use tokio::sync::oneshot;

/// A group commit of jobs `J` answered with `A` (see the module documentation).
pub struct GroupCommit<J, A> {
    jobs: mpsc::Sender<Job<J, A>>,
    /// The answer of a job whose committer could not answer it (it stopped or panicked).
    lost: fn(&'static str) -> A,
}

/// How groups are written: by `committers` threads, each taking at most `jobs` jobs and, beyond the
/// first, at most `weight` in total weight (the caller's measure of a job's size, e.g. its lines),
/// so that one transaction stays short.
///
/// A database that writes one transaction at a time (SQLite) wants one committer. One that commits
/// many at once (PostgreSQL) is better used by two or three: a group spends most of its time in
/// round trips and in its commit's flush, and the next group is stored meanwhile.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Committer threads.
    pub committers: usize,
    /// The most jobs of one group.
    pub jobs: usize,
    /// The most weight of one group beyond its first job.
    pub weight: usize,
}

/// A job waiting for its group, with its weight and where its answer goes.
struct Job<J, A> {
    job: J,
    weight: usize,
    answer: oneshot::Sender<A>,
}

impl<J: Send + 'static, A: Send + 'static> GroupCommit<J, A> {
    /// Starts the committer threads (named `name`). `store` writes one group and returns one
    /// answer per job, in order; `lost` is the answer of a job `store` gave none for (or panicked
    /// on). The threads end once the `GroupCommit` is dropped and its last groups are answered.
    pub fn start(
        name: &str,
        limits: Limits,
        lost: fn(&'static str) -> A,
        store: impl Fn(Vec<J>) -> Vec<A> + Send + Sync + 'static,
    ) -> std::io::Result<GroupCommit<J, A>> {
        let (jobs, waiting) = mpsc::channel();
        let waiting = Arc::new(Mutex::new(waiting));
        let store = Arc::new(store);
        let limits = Limits {
            committers: limits.committers.max(1),
            jobs: limits.jobs.max(1),
            ..limits
        };
        for _ in 0..limits.committers {
            let (waiting, store) = (waiting.clone(), store.clone());
            std::thread::Builder::new()
                .name(name.to_string())
                .spawn(move || commit_groups(&waiting, limits, lost, &*store))?;
        }
        Ok(GroupCommit { jobs, lost })
    }

    /// Stores `job` in a group and returns its answer once the group's transaction is over.
    pub async fn submit(&self, job: J, weight: usize) -> A {
        match self.send(job, weight) {
            Ok(answer) => answer
                .await
                .unwrap_or_else(|_| (self.lost)("gave no answer")),
            Err(lost) => lost,
        }
    }

    /// [`GroupCommit::submit`] for a thread outside the async runtime: blocks until answered.
    pub fn submit_blocking(&self, job: J, weight: usize) -> A {
        match self.send(job, weight) {
            Ok(answer) => answer
                .blocking_recv()
                .unwrap_or_else(|_| (self.lost)("gave no answer")),
            Err(lost) => lost,
        }
    }

    fn send(&self, job: J, weight: usize) -> Result<oneshot::Receiver<A>, A> {
        let (answer, answered) = oneshot::channel();
        self.jobs
            .send(Job {
                job,
                weight,
                answer,
            })
            .map_err(|_| (self.lost)("has stopped"))?;
        Ok(answered)
    }
}

/// A committer: takes a group, stores it, answers it; until every writer is gone. Committers take
/// turns at taking a group, so each group is the jobs that arrived while the others stored theirs.
fn commit_groups<J, A>(
    waiting: &Mutex<mpsc::Receiver<Job<J, A>>>,
    limits: Limits,
    lost: fn(&'static str) -> A,
    store: &impl Fn(Vec<J>) -> Vec<A>,
) {
    let mut next = None;
    loop {
        let (group, left) = {
            let waiting = waiting.lock().unwrap_or_else(PoisonError::into_inner);
            let first = match next.take() {
                Some(job) => job,
                None => match waiting.recv() {
                    Ok(job) => job,
                    Err(mpsc::RecvError) => return,
                },
            };
            take_group(first, &waiting, limits)
        };
        next = left;
        let (jobs, writers): (Vec<J>, Vec<_>) =
            group.into_iter().map(|j| (j.job, j.answer)).unzip();
        let answers = catch_unwind(AssertUnwindSafe(|| store(jobs)));
        let mut answers = match answers {
            Ok(answers) => answers.into_iter(),
            Err(_) => {
                tracing::error!(jobs = writers.len(), "the group commit's writer panicked");
                Vec::new().into_iter()
            }
        };
        for writer in writers {
            // A writer that stopped waiting (its client went away) needs no answer.
            let _ = writer.send(answers.next().unwrap_or_else(|| lost("gave no answer")));
        }
    }
}

/// A group, and the first job that did not fit in it.
type Taken<J, A> = (Vec<Job<J, A>>, Option<Job<J, A>>);

/// `first` and the jobs waiting behind it, within the limits; and the first job that did not fit.
fn take_group<J, A>(
    first: Job<J, A>,
    waiting: &mpsc::Receiver<Job<J, A>>,
    limits: Limits,
) -> Taken<J, A> {
    let mut group = vec![first];
    let mut weight = 0;
    while group.len() < limits.jobs {
        let Ok(job) = waiting.try_recv() else {
            break;
        };
        if weight + job.weight > limits.weight {
            return (group, Some(job));
        }
        weight += job.weight;
        group.push(job);
    }
    (group, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    fn lost(_: &'static str) -> Result<u32, String> {
        Err("lost".into())
    }

    #[test]
    fn a_group_stops_at_its_limits_but_always_takes_one() {
        let (tx, rx) = mpsc::channel();
        let job = |n: u32, weight| {
            let (answer, _) = oneshot::channel::<()>();
            Job {
                job: n,
                weight,
                answer,
            }
        };
        let limits = Limits {
            committers: 1,
            jobs: 3,
            weight: 10,
        };
        for (n, weight) in [(1, 4), (2, 4), (3, 4), (4, 1), (5, 1), (6, 1)] {
            tx.send(job(n, weight)).unwrap();
        }
        let ids = |g: &[Job<u32, ()>]| g.iter().map(|j| j.job).collect::<Vec<_>>();
        let (group, left) = take_group(job(0, 20), &rx, limits);
        assert_eq!((ids(&group), left.is_none()), (vec![0, 1, 2], true));
        let (group, left) = take_group(rx.recv().unwrap(), &rx, limits);
        assert_eq!(
            ids(&group),
            vec![3, 4, 5],
            "the first's weight is not counted"
        );
        assert!(left.is_none());
        tx.send(job(7, 20)).unwrap();
        let (group, left) = take_group(rx.recv().unwrap(), &rx, limits);
        assert_eq!(ids(&group), vec![6]);
        assert_eq!(
            left.map(|j| j.job),
            Some(7),
            "too heavy: the next group's first"
        );
    }

    #[test]
    fn every_writer_gets_its_own_answer_and_writers_arriving_together_share_a_group() {
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let seen = sizes.clone();
        let group = Arc::new(
            GroupCommit::start(
                "test-commit",
                Limits {
                    committers: 2,
                    jobs: 100,
                    weight: 1000,
                },
                lost,
                move |jobs: Vec<u32>| {
                    seen.lock().unwrap().push(jobs.len());
                    // A commit's duration, during which the others arrive.
                    std::thread::sleep(std::time::Duration::from_millis(50));
                    jobs.into_iter().map(|j| Ok(j * 10)).collect()
                },
            )
            .unwrap(),
        );
        let start = Arc::new(std::sync::Barrier::new(16));
        let writers: Vec<_> = (0..16u32)
            .map(|n| {
                let (group, start) = (group.clone(), start.clone());
                std::thread::spawn(move || {
                    start.wait();
                    (n, group.submit_blocking(n, 1))
                })
            })
            .collect();
        for w in writers {
            let (n, answer) = w.join().unwrap();
            assert_eq!(answer, Ok(n * 10));
        }
        let sizes = sizes.lock().unwrap();
        assert_eq!(
            sizes.iter().sum::<usize>(),
            16,
            "each job stored once: {sizes:?}"
        );
        assert!(sizes.len() < 16, "no group of more than one: {sizes:?}");
    }

    #[test]
    fn a_lone_writer_is_stored_at_once_and_a_panicking_writer_fails_only_its_group() {
        let group = GroupCommit::start(
            "test-commit",
            Limits {
                committers: 1,
                jobs: 10,
                weight: 10,
            },
            lost,
            |jobs: Vec<u32>| {
                assert!(!jobs.contains(&1), "store failed");
                jobs.into_iter().map(|j| Ok(j + 1)).collect()
            },
        )
        .unwrap();
        assert_eq!(group.submit_blocking(4, 1), Ok(5));
        assert_eq!(group.submit_blocking(1, 1), Err("lost".to_string()));
        assert_eq!(group.submit_blocking(7, 1), Ok(8), "the committer goes on");
    }
}
