//! SEARCH keys evaluated against one message (being built).
