//! SQLite implementation of [`Store`](super::Store) (in progress).
