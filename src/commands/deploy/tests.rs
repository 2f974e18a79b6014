//! Unit tests of the plan and its rendering.
