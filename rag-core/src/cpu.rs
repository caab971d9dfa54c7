//! CPU-bound work off the async worker threads.

use std::sync::OnceLock;

/// Inputs smaller than this many bytes are processed inline: handing them
/// to another thread would cost more than it saves.
pub(crate) const OFFLOAD_BYTES: usize = 8 * 1024;

/// Runs `f` on rayon's pool (one thread per core) and waits for it without
/// blocking: the async worker threads stay free, several such calls use
/// several cores, and the pool's threads live on with their per-thread
/// caches warm (tokenizer pieces, analyzed words, regex scratch). A panic in
/// `f` resumes in the caller.
pub(crate) async fn run<T, F>(f: F) -> T
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let (tx, rx) = futures::channel::oneshot::channel();
    rayon::spawn(move || {
        // The receiver is gone only if the caller was dropped: nothing to do.
        let _ = tx.send(std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)));
    });
    match rx.await {
        Ok(Ok(v)) => v,
        Ok(Err(panic)) => std::panic::resume_unwind(panic),
        // rayon runs every spawned job; a job that panicked sent its panic.
        Err(_) => unreachable!("rayon dropped a job without running it"),
    }
}

/// The number of cores to spread CPU-bound work over.
pub(crate) fn parallelism() -> usize {
    static N: OnceLock<usize> = OnceLock::new();
    *N.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Splits `items` into at most `parts` runs of about equal `weight`, in order.
pub(crate) fn split_by_weight<T>(
    items: Vec<T>,
    parts: usize,
    weight: impl Fn(&T) -> usize,
) -> Vec<Vec<T>> {
    let total: usize = items.iter().map(&weight).sum();
    let parts = parts.clamp(1, items.len().max(1));
    let target = total.div_ceil(parts).max(1);
    let mut out: Vec<Vec<T>> = Vec::with_capacity(parts);
    let mut current = Vec::new();
    let mut filled = 0;
    for item in items {
        filled += weight(&item);
        current.push(item);
        if filled >= target && out.len() + 1 < parts {
            out.push(std::mem::take(&mut current));
            filled = 0;
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_keep_order_and_balance() {
        let parts = split_by_weight((1..=10).collect(), 3, |n: &usize| *n);
        assert_eq!(parts.concat(), (1..=10).collect::<Vec<_>>());
        assert_eq!(parts.len(), 3);
        assert!(parts.iter().all(|p| p.iter().sum::<usize>() <= 30));
        assert_eq!(split_by_weight(vec![5], 4, |n: &usize| *n), vec![vec![5]]);
        assert!(split_by_weight(Vec::<usize>::new(), 4, |n| *n).is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn runs_off_the_worker_and_passes_panics_on() {
        let worker = std::thread::current().id();
        let ran_on = run(move || std::thread::current().id()).await;
        assert_ne!(ran_on, worker);
        // Without a runtime too.
        assert_eq!(futures::executor::block_on(run(|| 6 * 7)), 42);
        let panicked = tokio::spawn(run(|| -> u8 { panic!("boom") })).await;
        assert!(panicked.unwrap_err().is_panic());
    }
}
