//! The behaviour every [`Store`] must show, as one suite run against each
//! implementation (the local vault in unit tests, S3 against a real server in
//! integration tests). `prefix` keeps runs apart in a shared bucket. Uses only the
//! [`Store`] trait, never an implementation's internals; must not import `config`.

use std::io::Write;

use anyhow::{Context, ensure};
use chrono::{TimeZone, Utc};
use tokio::io::AsyncReadExt;

use super::{PutOptions, Store};
use crate::error::Error;
use crate::pipe::{self, PipeReader};
use crate::retention::{Lock, LockMode};

async fn read_all(store: &dyn Store, key: &str, version: Option<&str>) -> anyhow::Result<Vec<u8>> {
    let mut reader = store.get(key, version).await?;
    let mut out = Vec::new();
    reader.read_to_end(&mut out).await?;
    Ok(out)
}

fn streamed(data: Vec<u8>, finish: bool) -> PipeReader {
    let (mut w, r) = pipe::pipe(64 * 1024, 2);
    std::thread::spawn(move || {
        if w.write_all(&data).is_ok() && finish {
            let _ = w.finish();
        }
    });
    r
}

/// Runs the suite; the first broken promise is the error.
pub async fn run(store: &dyn Store, prefix: &str) -> anyhow::Result<()> {
    let lock = Lock {
        mode: LockMode::Compliance,
        retain_until: Utc.with_ymd_and_hms(2099, 1, 1, 0, 0, 0).unwrap(),
    };
    let opts = PutOptions { lock: Some(lock) };
    let key = |name: &str| format!("{prefix}/{name}");

    // A small object round-trips, with its size and lock.
    let small = key("small");
    let receipt = store
        .put(&small, PipeReader::from_bytes(&b"hello"[..]), &opts)
        .await
        .context("put small")?;
    ensure!(receipt.size == 5, "receipt size {} != 5", receipt.size);
    let v = receipt.version_id.as_deref();
    ensure!(
        read_all(store, &small, v).await? == b"hello",
        "small object bytes differ"
    );
    let meta = store.head(&small, v).await.context("head small")?;
    ensure!(meta.size == 5, "head size {} != 5", meta.size);
    ensure!(
        meta.lock == Some(lock),
        "lock {:?} != {:?}",
        meta.lock,
        Some(lock)
    );

    // A key written once has exactly one version.
    let versions: Vec<_> = store
        .all_versions(&small)
        .await
        .context("versions small")?
        .into_iter()
        .filter(|v| v.key == small)
        .collect();
    ensure!(
        versions.len() == 1 && !versions[0].delete_marker && versions[0].version_id.as_deref() == v,
        "versions of a key written once: {versions:?}"
    );

    // A multi-chunk streamed object round-trips.
    let big_data: Vec<u8> = (0..3 * 1024 * 1024 + 17).map(|i| (i % 251) as u8).collect();
    let big = key("big");
    let receipt = store
        .put(&big, streamed(big_data.clone(), true), &opts)
        .await
        .context("put streamed")?;
    ensure!(
        receipt.size == big_data.len() as u64,
        "streamed size differs"
    );
    ensure!(
        read_all(store, &big, receipt.version_id.as_deref()).await? == big_data,
        "streamed object bytes differ"
    );

    // An empty object is still an object.
    let empty = key("empty");
    let receipt = store
        .put(&empty, PipeReader::from_bytes(Vec::new()), &opts)
        .await
        .context("put empty")?;
    ensure!(
        read_all(store, &empty, receipt.version_id.as_deref())
            .await?
            .is_empty(),
        "empty object not empty"
    );

    // Write-once: a second put to a key fails and leaves the first object alone.
    let again = store
        .put(&small, PipeReader::from_bytes(&b"other"[..]), &opts)
        .await;
    ensure!(
        matches!(again, Err(Error::AlreadyExists(_))),
        "overwrite was not refused: {again:?}"
    );
    ensure!(
        read_all(store, &small, None).await? == b"hello",
        "overwrite changed the object"
    );

    // A stream cut short leaves nothing behind.
    let cut = key("cut");
    let result = store
        .put(&cut, streamed(vec![7u8; 200_000], false), &opts)
        .await;
    ensure!(result.is_err(), "a stream cut short was stored");
    ensure!(
        matches!(store.head(&cut, None).await, Err(Error::NotFound(_))),
        "a stream cut short left an object"
    );

    // Larger than one upload part (S3: 8 MiB parts at the smallest): whole, or nothing.
    let large_data: Vec<u8> = (0..20 * 1024 * 1024 + 5).map(|i| (i % 253) as u8).collect();
    let large = key("large");
    let receipt = store
        .put(&large, streamed(large_data.clone(), true), &opts)
        .await
        .context("put large")?;
    ensure!(
        receipt.size == large_data.len() as u64
            && read_all(store, &large, receipt.version_id.as_deref()).await? == large_data,
        "large object differs"
    );
    let large_cut = key("large-cut");
    let result = store
        .put(&large_cut, streamed(large_data, false), &opts)
        .await;
    ensure!(result.is_err(), "a large stream cut short was stored");
    ensure!(
        matches!(store.head(&large_cut, None).await, Err(Error::NotFound(_))),
        "a large stream cut short left an object"
    );

    // Reading what is not there says so.
    ensure!(
        matches!(
            store.get(&key("missing"), None).await,
            Err(Error::NotFound(_))
        ),
        "missing object not reported as NotFound"
    );

    // Listing is sorted, complete and stays inside the prefix.
    let listed: Vec<String> = store
        .list(&format!("{prefix}/"))
        .await
        .context("list")?
        .into_iter()
        .map(|m| m.key)
        .collect();
    ensure!(
        listed == vec![big.clone(), empty.clone(), large.clone(), small.clone()],
        "list gave {listed:?}"
    );
    let originals = store
        .list_originals(&format!("{prefix}/"))
        .await
        .context("list_originals")?;
    ensure!(
        originals.iter().map(|m| &m.key).eq(listed.iter()),
        "list_originals gave {originals:?}"
    );
    let none = store.list(&format!("{prefix}-other/")).await?;
    ensure!(none.is_empty(), "list leaked outside its prefix: {none:?}");
    Ok(())
}
