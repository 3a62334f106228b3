//! A job run on a thread of its own whenever asked, at most once at a time: the store's settle
//! ([`crate::sled_store`]), which merges the subject index and fsyncs sled's file — tens of
//! milliseconds that the appender's commit or the driver's flush would otherwise wait for.
//! Requests made while the job runs fold into one more run. The thread starts at the first
//! request and is stopped and joined when the [`Settler`] drops, so whatever the job holds (a
//! copy of the store, and with it the data directory's lock) is released by then. A run that
//! fails or panics is logged and its error kept for the next caller to report.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

/// The job: run again on each request, on the settler's thread.
pub type Job = Box<dyn FnMut() -> Result<(), String> + Send>;

#[derive(Debug)]
pub struct Settler {
    name: &'static str,
    shared: Arc<Requests>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

#[derive(Debug, Default)]
struct Requests {
    state: Mutex<State>,
    wake: Condvar,
}

#[derive(Debug, Default)]
struct State {
    requested: bool,
    stop: bool,
    /// The last failed run's error, until a caller takes it.
    failed: Option<String>,
}

impl Requests {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `job` whenever asked, until told to stop.
    fn serve(&self, name: &str, mut job: Job) {
        loop {
            let mut state = self.lock();
            while !state.requested && !state.stop {
                state = self.wake.wait(state).unwrap_or_else(|p| p.into_inner());
            }
            if state.stop {
                return;
            }
            state.requested = false;
            drop(state);
            // A panic is reported like a failure: the thread lives on to serve the next
            // request rather than leaving every later one unanswered.
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(&mut job))
                .unwrap_or_else(|_| Err("it panicked".to_string()));
            if let Err(e) = outcome {
                tracing::error!(error = %e, thread = name, "background job failed");
                self.lock().failed = Some(e);
            }
        }
    }
}

impl Settler {
    /// A settler whose thread will be called `name`; nothing starts until the first request.
    pub fn new(name: &'static str) -> Settler {
        Settler {
            name,
            shared: Arc::default(),
            thread: Mutex::default(),
        }
    }

    /// Asks for a run of the job, starting the thread with the job `start` makes the first time.
    pub fn request(&self, start: impl FnOnce() -> Job) {
        self.shared.lock().requested = true;
        let mut thread = self.thread.lock().unwrap_or_else(|p| p.into_inner());
        if thread.is_none() {
            let (shared, job, name) = (self.shared.clone(), start(), self.name);
            let spawned = std::thread::Builder::new()
                .name(name.into())
                .spawn(move || shared.serve(name, job));
            match spawned {
                Ok(handle) => *thread = Some(handle),
                Err(e) => self.shared.lock().failed = Some(format!("starting {name}: {e}")),
            }
        }
        self.shared.wake.notify_one();
    }

    /// The error of a run that failed since the last call, if any.
    pub fn take_failure(&self) -> Option<String> {
        self.shared.lock().failed.take()
    }
}

impl Drop for Settler {
    fn drop(&mut self) {
        self.shared.lock().stop = true;
        self.shared.wake.notify_one();
        let thread = self.thread.get_mut().unwrap_or_else(|p| p.into_inner());
        if let Some(handle) = thread.take() {
            if handle.join().is_err() {
                tracing::error!(thread = self.name, "background thread panicked");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::{Duration, Instant};

    fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(Instant::now() < deadline, "{what}");
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    #[test]
    fn runs_on_request_reports_failures_once_and_joins_on_drop() {
        let runs = Arc::new(AtomicUsize::new(0));
        let settler = Settler::new("test-settler");
        let r = runs.clone();
        let start = move || -> Job {
            Box::new(move || match r.fetch_add(1, Ordering::SeqCst) {
                1 => Err("disk full".to_string()),
                2 => panic!("a bug"),
                _ => Ok(()),
            })
        };
        settler.request(start);
        wait_for("the first run", || runs.load(Ordering::SeqCst) == 1);
        assert_eq!(settler.take_failure(), None);
        settler.request(|| unreachable!("started once"));
        wait_for("the second run", || runs.load(Ordering::SeqCst) == 2);
        wait_for("its failure", || settler.shared.lock().failed.is_some());
        assert_eq!(settler.take_failure().as_deref(), Some("disk full"));
        assert_eq!(settler.take_failure(), None, "reported once");
        settler.request(|| unreachable!("started once"));
        wait_for("the panic", || settler.shared.lock().failed.is_some());
        assert_eq!(settler.take_failure().as_deref(), Some("it panicked"));
        settler.request(|| unreachable!("started once"));
        wait_for("a run after the panic", || runs.load(Ordering::SeqCst) == 4);
        // Dropping stops and joins the thread, which drops the job and what it holds.
        let held = Arc::new(());
        let settler = Settler::new("test-settler-2");
        let h = held.clone();
        settler.request(move || {
            Box::new(move || {
                let _ = &h;
                Ok(())
            })
        });
        drop(settler);
        assert_eq!(
            Arc::strong_count(&held),
            1,
            "the job was dropped with its thread"
        );
    }
}
