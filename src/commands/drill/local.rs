//! PLACEHOLDER: replaced by the drill-local branch.
#![allow(dead_code)]
use std::path::{Path, PathBuf};

use crate::source::{mysql, postgres};

pub struct LocalServer {
    dir: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalKind {
    Postgres,
    Mariadb,
    Redis,
}

impl LocalServer {
    pub fn start(
        _kind: LocalKind,
        _bin_dir: Option<&Path>,
        _redis_rdb: Option<&Path>,
    ) -> anyhow::Result<LocalServer> {
        anyhow::bail!("not yet")
    }
    pub fn endpoint(&self, _database: Option<&str>) -> Endpoint {
        Endpoint::Dir {
            path: self.dir.clone(),
        }
    }
    pub fn port(&self) -> u16 {
        0
    }
    pub fn pid(&self) -> u32 {
        0
    }
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    pub fn stop(self) -> anyhow::Result<()> {
        Ok(())
    }
}

pub enum Endpoint {
    Postgres {
        host: String,
        port: u16,
        user: String,
        password: Option<String>,
        database: String,
        bin_dir: Option<PathBuf>,
    },
    Mysql {
        host: String,
        port: u16,
        user: String,
        password: Option<String>,
        database: Option<String>,
    },
    Redis {
        host: String,
        port: u16,
        password: Option<String>,
    },
    Sqlite {
        path: PathBuf,
    },
    Dir {
        path: PathBuf,
    },
}

impl Endpoint {
    pub fn url(&self) -> String {
        String::new()
    }
    pub fn postgres_target(&self) -> anyhow::Result<postgres::restore::Target> {
        anyhow::bail!("not yet")
    }
    pub fn mysql_target(&self) -> anyhow::Result<mysql::restore::Target> {
        anyhow::bail!("not yet")
    }
}
