//! Micro-Managers client (in progress).
