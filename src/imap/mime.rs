//! ENVELOPE, BODYSTRUCTURE and sections from a message's stored bytes (being built).
