//! tunneld's own SSH client (`tunneld-ssh`) against real servers started by the test-kit:
//! interop for every algorithm it offers, and flow control (a paused or slow reader stops
//! only its own channel; heartbeats and other channels carry on; nothing is lost).
//!
//! Layout:
//! - `kit`: connecting a session to a kit server.
//! - `flow`: paused and slow readers, through direct-tcpip and forwarded-tcpip channels.
//! - `basics`: channels, remote listeners, host key refusal, re-keying.
//! - `interop`: every kex, cipher, MAC, host key and user key type against OpenSSH 9.2 and
//!   10, Dropbear, and servers with only weak algorithms.
//! - `rotation`: sshd's host key announcement and its proofs (`hostkeys-prove-00`).

mod basics;
mod flow;
mod interop;
mod kit;
mod rotation;
