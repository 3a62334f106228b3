//! Data parallelism without I/O: [`map`] runs a pure function over a slice ([`map_owned`]: a
//! vector, by value; [`map_batches_owned`]: a batch per thread) on every core and returns the
//! results in input order, so callers stay deterministic. It exists for one hot spot —
//! verifying the Ed25519 signatures of a chunk of records a peer sent, which is most of a
//! catch-up's CPU — and is only worth handing work to other threads for batches of at least
//! [`PAR_ITEMS_MIN`].
//!
//! The work runs on rayon's pool of long-lived threads, one per core. It used to run on threads
//! started for each batch: a 200k-record catch-up started ~800 of them, and with a per-thread
//! allocator (the node's mimalloc) each got a heap of its own, abandoned at exit while the
//! records verified in it were still alive elsewhere — memory held until other threads
//! reclaimed it.

use rayon::iter::{IntoParallelIterator, ParallelIterator};

/// Below this many items, [`map`] runs on the calling thread.
pub const PAR_ITEMS_MIN: usize = 16;

/// Batches [`map_batches_owned`] makes at most, however many cores there are: a chunk is at most a few hundred
/// records, and more threads than that would each get too little work.
pub const PAR_THREADS_MAX: usize = 8;

/// The cores this process may use, looked up once: `available_parallelism` reads the cgroup's
/// CPU quota from `/proc` and `/sys` on every call, which showed in profiles of the sealer and of
/// catch-up verification, both of which ask once per batch. A quota changed while the process
/// runs is not seen until it restarts.
pub fn cores() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// `items.iter().map(f).collect()`, spread over the available cores; same result, same order.
/// A panic in `f` is resumed on the calling thread.
pub fn map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    map_owned(items.iter().collect(), f)
}

/// [`map`] taking the items by value, for functions that keep what they are given.
pub fn map_owned<T: Send, R: Send>(items: Vec<T>, f: impl Fn(T) -> R + Sync) -> Vec<R> {
    map_batches_owned(items, |part| part.into_iter().map(&f).collect())
}

/// Splits `items` into one batch per thread and runs `f` on each, for work that is cheaper done
/// a batch at a time (signature checks sharing one field inversion); `f` must return one result
/// per item, in order. Returns the results of all batches in input order. Below
/// [`PAR_ITEMS_MIN`] items, or on one core, `f` gets them all on the calling thread.
pub fn map_batches_owned<T: Send, R: Send>(
    items: Vec<T>,
    f: impl Fn(Vec<T>) -> Vec<R> + Sync,
) -> Vec<R> {
    let threads = cores().min(PAR_THREADS_MAX);
    if threads <= 1 || items.len() < PAR_ITEMS_MIN {
        return f(items);
    }
    let chunk = items.len().div_ceil(threads);
    let mut items = items.into_iter();
    let mut parts: Vec<Vec<T>> = Vec::with_capacity(threads);
    loop {
        let part: Vec<T> = items.by_ref().take(chunk).collect();
        if part.is_empty() {
            break;
        }
        parts.push(part);
    }
    let done: Vec<Vec<R>> = parts.into_par_iter().map(&f).collect();
    done.into_iter().flatten().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_results_in_the_same_order_at_every_size() {
        for n in [0, 1, PAR_ITEMS_MIN - 1, PAR_ITEMS_MIN, 17, 255, 256, 1000] {
            let items: Vec<u64> = (0..n as u64).collect();
            let expected: Vec<u64> = items.iter().map(|x| x * x + 1).collect();
            assert_eq!(map(&items, |x| x * x + 1), expected, "n = {n}");
            assert_eq!(map_owned(items.clone(), |x| x * x + 1), expected, "n = {n}");
            let batched = map_batches_owned(items, |part| {
                assert!(n == 0 || !part.is_empty(), "n = {n}: an empty batch");
                part.into_iter().map(|x| x * x + 1).collect()
            });
            assert_eq!(batched, expected, "n = {n}");
        }
    }
}
