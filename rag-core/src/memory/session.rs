//! In-memory session store (placeholder until implemented).

/// Configuration of a [`MemorySessionStore`].
#[derive(Clone, Debug, Default)]
pub struct MemorySessionConfig {}

/// The in-memory reference session store.
#[derive(Debug, Default)]
pub struct MemorySessionStore {}
