//! The proof that the backend enforces Object Lock COMPLIANCE retention, on the canary
//! itself: an identity that may extend its retention extends it by a second, then must
//! fail to shorten it; the date read back must not have gone back; and an identity
//! that may delete versions must fail to delete the canary's locked one.
//!
//! Sends through the identities' `store::s3::Session` clients, never a store's
//! internals; what an answer means is `probe`'s.

use chrono::Duration;
use serde::Serialize;

use super::findings::NO_CANARY;
use super::identities::Ident;
use super::matrix::{self, Expect};
use super::probe::{Observed, attempt};
use super::{Doctor, at};
use crate::retention::LockSource;
use crate::store::Role;
use crate::store::s3::chrono_time;

/// Whether the backend was seen to enforce COMPLIANCE retention.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "state", content = "detail", rename_all = "kebab-case")]
pub(super) enum Enforcement {
    Enforced(String),
    NotEnforced(String),
    Unproven(String),
    Unknown(String),
}

impl Doctor<'_> {
    /// Retention: readers must not change it; the per-object writer may extend it but
    /// nobody may shorten it. An extension granted and a shortening refused on the
    /// same COMPLIANCE canary proves the backend enforces the lock.
    pub(super) async fn retention(&mut self, writer: Option<&Ident>, readers: &[&Ident]) {
        let per_object = self.settings.retention.source == LockSource::PerObject;
        let Some(aim) = self.aim() else {
            for id in writer.into_iter().chain(readers.iter().copied()) {
                self.skip(id.role(), matrix::EXTEND_RETENTION, NO_CANARY);
                if id.role() == Role::Writer {
                    self.skip(id.role(), matrix::SHORTEN_RETENTION, NO_CANARY);
                }
            }
            self.enforcement = match self.no_object_lock {
                Some(_) => Enforcement::NotEnforced("the bucket has no Object Lock".into()),
                None => Enforcement::Unknown(NO_CANARY.into()),
            };
            return;
        };
        let Some(mut until) = self.canary.as_ref().and_then(|c| c.until) else {
            for id in writer.into_iter().chain(readers.iter().copied()) {
                self.skip(
                    id.role(),
                    matrix::EXTEND_RETENTION,
                    "the canary's retain-until date is not known",
                );
            }
            self.enforcement = Enforcement::Unproven(
                "the canary's retain-until date could not be read, so no retention change \
                 was tried"
                    .into(),
            );
            return;
        };
        // Who could extend it, and so can try to shorten it.
        let mut extender: Option<&Ident> = None;
        for id in readers.iter().copied().chain(writer) {
            let longer = until + Duration::seconds(1);
            let expect = self.expect(id.role(), matrix::EXTEND_RETENTION);
            let (_, out) = self
                .probe(id, matrix::EXTEND_RETENTION, expect, || {
                    aim.put_retention(id.s3(), longer).send()
                })
                .await;
            if out.is_some() {
                until = longer;
                if extender.is_none() || id.role() == Role::Writer {
                    extender = Some(id);
                }
            }
        }
        if let Some(c) = self.canary.as_mut() {
            c.until = Some(until);
        }

        let shorter = until - Duration::hours(1);
        let mut shortened: Option<(Role, Observed)> = None;
        if let Some(w) = writer {
            let (observed, out) = self
                .probe(w, matrix::SHORTEN_RETENTION, Expect::Denied, || {
                    aim.put_retention(w.s3(), shorter).send()
                })
                .await;
            if out.is_some() || extender.is_some_and(|e| e.role() == Role::Writer) {
                shortened = Some((Role::Writer, observed));
            }
        }
        if shortened.is_none()
            && let Some(e) = extender
        {
            // A reader wrongly allowed to extend: it tries shortening too (no row of
            // its own: its extension already fails the matrix).
            let what = format!(
                "shortening the canary's retention as the {}",
                e.role().as_str()
            );
            let (observed, _) = attempt(&what, || aim.put_retention(e.s3(), shorter).send()).await;
            shortened = Some((e.role(), observed));
        }

        self.enforcement = match (&shortened, extender) {
            (Some((who, observed)), _) if observed.is_accepted() => {
                Enforcement::NotEnforced(format!(
                    "the {} shortened the canary's COMPLIANCE retention from {} to {}",
                    who.as_str(),
                    at(until),
                    at(shorter)
                ))
            }
            // Whoever shortens is the identity that extended: a refusal is the lock's.
            (Some((who, Observed::Denied(_))), Some(_)) => Enforcement::Enforced(format!(
                "the {} extended the canary's COMPLIANCE retention by 1s but could not \
                 shorten it",
                who.as_str()
            )),
            (Some((who, other)), Some(_)) => Enforcement::Unknown(format!(
                "shortening the canary's retention as the {} answered {}: {}",
                who.as_str(),
                other.word(),
                other.detail()
            )),
            _ if !per_object => Enforcement::Unproven(format!(
                "lock = \"bucket-default\": no identity may change retention, so no \
                 retention change can show that the backend enforces COMPLIANCE; {}",
                match &self.lock_seen {
                    Some(l) => format!(
                        "the canary does carry a {} lock until {} (read by the {})",
                        l.mode,
                        at(l.retain_until),
                        l.by
                    ),
                    None => "and no reader read the canary's lock back".into(),
                }
            )),
            _ if writer.is_none() => Enforcement::Unproven(
                "the writer was not probed (--only): it is the identity that may extend \
                 retention, so enforcement was not tried"
                    .into(),
            ),
            _ => Enforcement::Unknown(
                "the writer could not extend the canary's retention, so shortening it \
                 proves nothing"
                    .into(),
            ),
        };

        // Read the lock back: a refusal that shortened it anyway is no refusal.
        let Some(r) = readers.iter().find(|r| r.unusable.is_none()) else {
            return;
        };
        let (_, out) = attempt("reading the canary's retention back", || {
            aim.get_retention(r.s3()).send()
        })
        .await;
        if let Some(seen) = out
            .and_then(|o| o.retention)
            .and_then(|r| r.retain_until_date)
            .map(chrono_time)
            && seen < until
            && !matches!(self.enforcement, Enforcement::NotEnforced(_))
        {
            self.enforcement = Enforcement::NotEnforced(format!(
                "the canary's retain-until date went back from {} to {} (read by the {})",
                at(until),
                at(seen),
                r.role().as_str()
            ));
        }
    }

    /// If any identity may delete versions, it tries the canary's real one: the lock
    /// must refuse it.
    pub(super) async fn delete_the_canary(&mut self, idents: &[Ident]) {
        let Some(aim) = self.aim() else {
            return;
        };
        let deleters: Vec<&str> = self
            .rows
            .iter()
            .filter(|r| r.action == matrix::DELETE_VERSION.action && r.observed.is_allowed())
            .map(|r| r.identity)
            .collect();
        let Some(id) = idents
            .iter()
            .find(|i| deleters.contains(&i.role().as_str()))
        else {
            return;
        };
        let what = format!(
            "deleting the canary's locked version as the {}",
            id.role().as_str()
        );
        let (observed, out) =
            attempt(&what, || aim.delete(id.s3(), Some(&aim.version)).send()).await;
        match observed {
            _ if out.is_some() => {
                self.enforcement = Enforcement::NotEnforced(format!(
                    "the {} deleted the canary's COMPLIANCE-locked version {}",
                    id.role().as_str(),
                    aim.version
                ));
            }
            Observed::Denied(_) if !matches!(self.enforcement, Enforcement::NotEnforced(_)) => {
                self.enforcement = Enforcement::Enforced(format!(
                    "the {} may delete versions, yet the canary's locked version could not \
                     be deleted",
                    id.role().as_str()
                ));
            }
            _ => {}
        }
    }
}
