//! MySQL / MariaDB implementation of [`Store`](super::Store) (in progress).
