//! An ordered parallel map: items go out to worker threads, results come back
//! in submission order. Compressing writers use it to keep every core busy
//! while they still write their output strictly in sequence.

use std::any::Any;
use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender, bounded, unbounded};

/// A job's result, or the payload of its panic.
type Outcome<O> = Result<O, Box<dyn Any + Send>>;

pub struct OrderedPool<I: Send + 'static, O: Send + 'static> {
    jobs: Option<Sender<(u64, I)>>,
    /// A worker's panic travels back as `Err` and is resumed in the owner,
    /// so a panicking job cannot leave the owner waiting for it forever.
    results: Receiver<(u64, Outcome<O>)>,
    workers: Vec<JoinHandle<()>>,
    next_submit: u64,
    next_deliver: u64,
    pending: BTreeMap<u64, O>,
    max_in_flight: u64,
}

impl<I: Send + 'static, O: Send + 'static> OrderedPool<I, O> {
    /// Starts `threads` workers (0 = one per core) running `work`.
    pub fn new(threads: usize, work: impl Fn(I) -> O + Send + Sync + 'static) -> Self {
        let threads = if threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            threads
        };
        let work = Arc::new(work);
        let (job_tx, job_rx) = bounded::<(u64, I)>(threads * 4);
        let (result_tx, result_rx) = unbounded();
        let workers = (0..threads)
            .map(|_| {
                let job_rx = job_rx.clone();
                let result_tx = result_tx.clone();
                let work = Arc::clone(&work);
                std::thread::spawn(move || {
                    for (seq, item) in job_rx {
                        let out = catch_unwind(AssertUnwindSafe(|| work(item)));
                        if result_tx.send((seq, out)).is_err() {
                            return;
                        }
                    }
                })
            })
            .collect();
        OrderedPool {
            jobs: Some(job_tx),
            results: result_rx,
            workers,
            next_submit: 0,
            next_deliver: 0,
            pending: BTreeMap::new(),
            max_in_flight: threads as u64 * 8,
        }
    }

    /// Queues `item`; calls `deliver` with every result that is ready in order.
    /// Blocks while too many items are in flight, which bounds memory.
    pub fn submit<E>(
        &mut self,
        item: I,
        deliver: &mut impl FnMut(O) -> Result<(), E>,
    ) -> Result<(), E> {
        self.jobs
            .as_ref()
            .expect("pool is open")
            .send((self.next_submit, item))
            .expect("workers alive");
        self.next_submit += 1;
        while self.next_submit - self.next_deliver > self.max_in_flight {
            self.receive_one();
            self.drain(deliver)?;
        }
        while let Ok((seq, out)) = self.results.try_recv() {
            self.pending
                .insert(seq, out.unwrap_or_else(|panic| resume_unwind(panic)));
        }
        self.drain(deliver)
    }

    /// Waits for every queued item and delivers the rest in order.
    pub fn finish<E>(mut self, deliver: &mut impl FnMut(O) -> Result<(), E>) -> Result<(), E> {
        self.jobs = None;
        while self.next_deliver < self.next_submit {
            self.receive_one();
            self.drain(deliver)?;
        }
        for w in self.workers.drain(..) {
            w.join().expect("worker panicked");
        }
        Ok(())
    }

    fn receive_one(&mut self) {
        let (seq, out) = self.results.recv().expect("workers alive");
        self.pending
            .insert(seq, out.unwrap_or_else(|panic| resume_unwind(panic)));
    }

    fn drain<E>(&mut self, deliver: &mut impl FnMut(O) -> Result<(), E>) -> Result<(), E> {
        while let Some(out) = self.pending.remove(&self.next_deliver) {
            self.next_deliver += 1;
            deliver(out)?;
        }
        Ok(())
    }
}

impl<I: Send + 'static, O: Send + 'static> Drop for OrderedPool<I, O> {
    fn drop(&mut self) {
        // Closing the job channel ends the workers; results still queued are dropped.
        self.jobs = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_come_back_in_order() {
        let mut pool = OrderedPool::new(3, |x: u64| {
            // Uneven work so that workers finish out of order.
            std::thread::sleep(std::time::Duration::from_micros((x * 7919) % 300));
            x * 2
        });
        let mut seen = Vec::new();
        let mut deliver = |o: u64| -> Result<(), ()> {
            seen.push(o);
            Ok(())
        };
        for i in 0..200 {
            pool.submit(i, &mut deliver).unwrap();
        }
        pool.finish(&mut deliver).unwrap();
        assert_eq!(seen, (0..200).map(|i| i * 2).collect::<Vec<_>>());
    }

    #[test]
    fn a_panicking_job_panics_the_owner_instead_of_hanging_it() {
        let outcome = std::panic::catch_unwind(|| {
            let mut pool =
                OrderedPool::new(2, |x: u64| if x == 5 { panic!("job 5 fails") } else { x });
            let mut deliver = |_: u64| -> Result<(), ()> { Ok(()) };
            for i in 0..50 {
                pool.submit(i, &mut deliver).unwrap();
            }
            pool.finish(&mut deliver).unwrap();
        });
        let message = outcome.expect_err("the panic must reach the owner");
        assert_eq!(message.downcast_ref::<&str>(), Some(&"job 5 fails"));
    }
}
