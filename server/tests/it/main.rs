//! The server through real HTTP on loopback: local == remote byte for byte, the job life cycle
//! (events, resume, cancel, results with ranges, time limits), and every refusal's status and code.

mod batching;
mod harness;
mod jobs;
mod refusals;
mod remote;
