//! The simulated Shotgun site.
