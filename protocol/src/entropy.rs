//! Randomness comes into `protocol` through the [`Entropy`] trait so that the record format can be
//! pinned by test vectors and the simulator can replay a run from a seed. The node supplies the
//! operating system's generator; tests supply [`DeterministicEntropy`].

/// The randomness source failed (the OS generator is unavailable). Sealing refuses to continue
/// rather than emit predictable salts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("random number generator unavailable")]
pub struct EntropyUnavailable;

/// A source of random bytes for salts and decoy digests.
pub trait Entropy {
    fn fill(&mut self, out: &mut [u8]) -> Result<(), EntropyUnavailable>;
}

/// SHA-256 in counter mode over a seed. Predictable by design: **only** for test vectors,
/// simulations and benchmarks that must be reproducible — never for real records, whose salts
/// must be unguessable or the withheld values can be brute-forced from their digests.
#[derive(Debug, Clone)]
pub struct DeterministicEntropy {
    seed: [u8; 32],
    counter: u64,
    buf: [u8; 32],
    used: usize,
}

impl DeterministicEntropy {
    pub fn new(seed: &[u8]) -> Self {
        DeterministicEntropy {
            seed: crate::ids::sha256(seed),
            counter: 0,
            buf: [0; 32],
            used: 32,
        }
    }
}

impl Entropy for DeterministicEntropy {
    fn fill(&mut self, out: &mut [u8]) -> Result<(), EntropyUnavailable> {
        for b in out {
            if self.used == 32 {
                let mut input = [0u8; 40];
                input[..32].copy_from_slice(&self.seed);
                input[32..].copy_from_slice(&self.counter.to_be_bytes());
                self.buf = crate::ids::sha256(&input);
                self.counter += 1;
                self.used = 0;
            }
            *b = self.buf[self.used];
            self.used += 1;
        }
        Ok(())
    }
}
