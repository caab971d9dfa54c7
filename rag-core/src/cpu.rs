//! CPU-bound work off the async worker threads.

use std::sync::OnceLock;

/// Inputs smaller than this many bytes are processed inline: handing them
/// to another thread would cost more than it saves.
pub(crate) const OFFLOAD_BYTES: usize = 32 * 1024;

/// Runs `f` on tokio's blocking pool when a tokio runtime is current, so
/// that it neither holds an async worker thread nor waits for one, and so
/// that several such calls use several cores; without a runtime, inline.
/// A panic in `f` resumes in the caller.
///
/// At most one call per core runs at a time (the others wait their turn):
/// more would not finish sooner, and each new pool thread starts with cold
/// per-thread caches (tokenizer pieces, analyzed words, regex scratch).
pub(crate) async fn run<T, F>(f: F) -> T
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    static TURNS: OnceLock<tokio::sync::Semaphore> = OnceLock::new();
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => {
            let turns = TURNS.get_or_init(|| tokio::sync::Semaphore::new(parallelism()));
            // The semaphore is never closed.
            let _turn = turns.acquire().await.ok();
            match handle.spawn_blocking(f).await {
                Ok(v) => v,
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                // Only a runtime shutting down cancels a blocking task, and then
                // this future is not polled again.
                Err(e) => panic!("blocking task cancelled: {e}"),
            }
        }
        Err(_) => f(),
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
    async fn runs_off_the_worker_and_inline_without_a_runtime() {
        let worker = std::thread::current().id();
        let ran_on = run(move || std::thread::current().id()).await;
        assert_ne!(ran_on, worker);
        let (outside, inline) = std::thread::spawn(|| {
            let here = std::thread::current().id();
            (
                here,
                futures::executor::block_on(run(|| std::thread::current().id())),
            )
        })
        .join()
        .unwrap();
        assert_eq!(inline, outside);
    }
}
