pub mod facts;
pub mod local;
