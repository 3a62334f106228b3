//! The operating system's random generator behind `protocol`'s `Entropy` trait.

use ring::rand::{SecureRandom, SystemRandom};
use tfx_protocol::entropy::{Entropy, EntropyUnavailable};

/// Salts and decoys from the OS generator (getrandom).
#[derive(Debug, Clone)]
pub struct SystemEntropy(SystemRandom);

impl SystemEntropy {
    pub fn new() -> Self {
        SystemEntropy(SystemRandom::new())
    }
}

impl Default for SystemEntropy {
    fn default() -> Self {
        Self::new()
    }
}

impl Entropy for SystemEntropy {
    fn fill(&mut self, out: &mut [u8]) -> Result<(), EntropyUnavailable> {
        self.0.fill(out).map_err(|_| EntropyUnavailable)
    }
}
