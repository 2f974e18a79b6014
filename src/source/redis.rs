//! `redis`: an RDB snapshot streamed from the server with `redis-cli --rdb -`.
//!
//! The server forks and writes a point-in-time snapshot to the replication stream (as
//! for a new replica). With diskless replication (the default since Redis 7.0) nothing
//! is written to the server's disk; otherwise the server saves its RDB file first, as
//! for any new replica. AUTH comes from
//! `REDISCLI_AUTH` in redis-cli's environment, never `-a`. The stream must start with
//! `REDIS` and end with the RDB EOF opcode and checksum (see [`super::shape`]).
//!
//! Restoring is loading that file: `vault restore JOB --to DIR` writes `DIR/dump.rdb`
//! (docs/engines.md has the procedure).

use super::DumpStream;
use super::child::{self, Spawn};
use super::engines::RedisSource;
use super::shape::{Shape, Tail};

const RDB: Shape = Shape {
    what: "Redis RDB file",
    head: b"REDIS",
    tail: Tail::Rdb,
};

pub fn open(r: &RedisSource) -> anyhow::Result<Box<dyn DumpStream>> {
    let mut s = Spawn::new("redis-cli", "redis-cli")
        .arg("-h")
        .arg(r.host.clone().unwrap_or_else(|| "127.0.0.1".into()))
        .arg("-p")
        .arg(r.port.unwrap_or(6379).to_string());
    // redis-cli reports its progress on stderr: not worth a warning.
    s.chatty = true;
    if let Some(password) = r.password.read()? {
        s = s.env("REDISCLI_AUTH", password);
    }
    if let Some(user) = &r.user {
        s = s.arg("--user").arg(user.clone());
    }
    if r.tls {
        s = s.arg("--tls");
    }
    s = s.args(r.extra_args.iter().cloned()).args(["--rdb", "-"]);
    child::dump(s, Some(RDB))
}
