//! Megazord Events client (in progress).
