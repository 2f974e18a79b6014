//! The properties of a dumped database that its dump does not bring back, read from
//! the server at backup time and recorded in the manifest (`source.database_properties`),
//! so that `restore --create` makes a database like the original instead of one with
//! the target server's defaults.
//!
//! - PostgreSQL: the encoding and locale. A custom archive restored into an existing
//!   database (how vault restores) is converted to that database's encoding, so a
//!   LATIN1 database created with the server's defaults would come back as UTF8.
//! - MySQL/MariaDB, single-database dumps: the default character set and collation.
//!   The dump has no `CREATE DATABASE` (it restores under any name), and routine
//!   parameters without a character set of their own take the database's default.
//!
//! The values are server responses and end up inside SQL at restore time, from a
//! manifest that may have been edited: [`PgProperties::check`] and
//! [`MysqlProperties::check`] accept only what such names look like, and are called
//! when the values are read from the server ([`DatabaseProperties::vetted`]) and again
//! by the functions that put them into SQL (`create_clauses`).

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// What `restore --create` needs to make the database alike; one variant per engine.
/// Untagged: the JSON object holds the engine's own fields only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum DatabaseProperties {
    Postgres(PgProperties),
    Mysql(MysqlProperties),
}

impl DatabaseProperties {
    /// Whether every value looks like what its field names.
    pub fn check(&self) -> Result<(), String> {
        match self {
            DatabaseProperties::Postgres(p) => p.check(),
            DatabaseProperties::Mysql(m) => m.check(),
        }
    }

    /// The properties of database `db` as its server gave them, if they pass
    /// [`DatabaseProperties::check`]. Otherwise the backup goes on without them (a
    /// backup matters more than its `--create`), with a warning.
    pub fn vetted(self, db: &str) -> Option<DatabaseProperties> {
        match self.check() {
            Ok(()) => Some(self),
            Err(why) => {
                not_recorded(db, &why);
                None
            }
        }
    }
}

/// Warns that database `db`'s properties are left out of the manifest, and why.
pub fn not_recorded(db: &str, why: &str) {
    tracing::warn!(
        "database {db}: {why}; its properties are not recorded, so `restore --create` \
         will use the target server's defaults"
    );
}

/// A manifest's values that fail their check: nothing may be created with them.
fn untrusted(check: Result<(), String>) -> Result<(), Error> {
    check.map_err(|why| {
        Error::integrity(format!(
            "the manifest's source.database_properties: {why}; nothing was created"
        ))
    })
}

/// `pg_database`'s encoding and locale of the dumped database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PgProperties {
    /// `pg_encoding_to_char(encoding)`: `UTF8`, `LATIN1`, `SQL_ASCII`, ...
    pub encoding: String,
    /// `datcollate`.
    pub lc_collate: String,
    /// `datctype`.
    pub lc_ctype: String,
    /// `datlocprovider` (PostgreSQL 15+): `libc`, `icu` or `builtin`; absent for an
    /// older server, which knows libc only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locale_provider: Option<LocaleProvider>,
    /// The ICU or builtin provider's locale (`daticulocale`, `datlocale` from
    /// PostgreSQL 17); absent with libc.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locale: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LocaleProvider {
    Libc,
    Icu,
    Builtin,
}

impl LocaleProvider {
    /// From `pg_database.datlocprovider`.
    pub fn from_catalog(code: &str) -> Option<LocaleProvider> {
        match code {
            "c" => Some(LocaleProvider::Libc),
            "i" => Some(LocaleProvider::Icu),
            "b" => Some(LocaleProvider::Builtin),
            _ => None,
        }
    }

    /// The keyword of `CREATE DATABASE … LOCALE_PROVIDER`.
    pub fn keyword(self) -> &'static str {
        match self {
            LocaleProvider::Libc => "libc",
            LocaleProvider::Icu => "icu",
            LocaleProvider::Builtin => "builtin",
        }
    }
}

/// `information_schema.SCHEMATA`'s defaults of the dumped database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MysqlProperties {
    /// `DEFAULT_CHARACTER_SET_NAME`: `utf8mb4`, `latin1`, ...
    pub character_set: String,
    /// `DEFAULT_COLLATION_NAME`: `utf8mb4_unicode_ci`, ...
    pub collation: String,
}

/// Encoding, character set and collation names: ASCII letters, digits and `_`.
fn is_name(s: &str) -> bool {
    (1..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Locale names (`en_US.UTF-8`, `sr_RS@latin`, `und-u-ks-level2`, on Windows
/// `English_United States.1252`): anything printable except quotes and backslashes,
/// which is enough for a name and leaves nothing for a SQL literal to escape.
fn is_locale(s: &str) -> bool {
    (1..=128).contains(&s.chars().count())
        && s.chars()
            .all(|c| !c.is_control() && !matches!(c, '\'' | '"' | '\\'))
}

/// `Err` naming the field and the value when `ok` is false.
fn field(name: &str, value: &str, ok: bool, what: &str) -> Result<(), String> {
    if ok {
        Ok(())
    } else {
        Err(format!("{name} `{}` is not {what}", value.escape_debug()))
    }
}

impl PgProperties {
    /// Whether every value looks like what its field names.
    pub fn check(&self) -> Result<(), String> {
        field(
            "encoding",
            &self.encoding,
            is_name(&self.encoding),
            "an encoding name",
        )?;
        field(
            "lc_collate",
            &self.lc_collate,
            is_locale(&self.lc_collate),
            "a locale name",
        )?;
        field(
            "lc_ctype",
            &self.lc_ctype,
            is_locale(&self.lc_ctype),
            "a locale name",
        )?;
        if let Some(locale) = &self.locale {
            field("locale", locale, is_locale(locale), "a locale name")?;
        }
        Ok(())
    }

    /// The clauses of `CREATE DATABASE` that make the database alike: from
    /// `template0`, the only template that takes any encoding and locale. The values
    /// are checked first, and [`is_name`]/[`is_locale`] leave nothing to escape in a
    /// string literal.
    pub fn create_clauses(&self) -> Result<String, Error> {
        untrusted(self.check())?;
        let mut sql = format!(
            "TEMPLATE template0 ENCODING '{}' LC_COLLATE '{}' LC_CTYPE '{}'",
            self.encoding, self.lc_collate, self.lc_ctype
        );
        if let Some(provider) = self.locale_provider {
            sql += &format!(" LOCALE_PROVIDER {}", provider.keyword());
        }
        match (self.locale_provider, &self.locale) {
            (Some(LocaleProvider::Icu), Some(l)) => sql += &format!(" ICU_LOCALE '{l}'"),
            (Some(LocaleProvider::Builtin), Some(l)) => sql += &format!(" BUILTIN_LOCALE '{l}'"),
            _ => {}
        }
        Ok(sql)
    }
}

impl MysqlProperties {
    /// Whether both names look like character set and collation names.
    pub fn check(&self) -> Result<(), String> {
        field(
            "character_set",
            &self.character_set,
            is_name(&self.character_set),
            "a character set name",
        )?;
        field(
            "collation",
            &self.collation,
            is_name(&self.collation),
            "a collation name",
        )
    }

    /// The clauses of `CREATE DATABASE` that give the database these defaults. The
    /// names are checked first: letters, digits and `_` need no quoting.
    pub fn create_clauses(&self) -> Result<String, Error> {
        untrusted(self.check())?;
        Ok(format!(
            "CHARACTER SET {} COLLATE {}",
            self.character_set, self.collation
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pg(encoding: &str, collate: &str) -> PgProperties {
        PgProperties {
            encoding: encoding.into(),
            lc_collate: collate.into(),
            lc_ctype: "C".into(),
            locale_provider: None,
            locale: None,
        }
    }

    #[test]
    fn names_that_could_break_out_of_sql_are_refused() {
        for good in [
            "C",
            "en_US.UTF-8",
            "sr_RS@latin",
            "English_United States.1252",
        ] {
            assert!(pg("LATIN1", good).check().is_ok(), "{good}");
        }
        for bad in ["", "C'; DROP DATABASE x; --", "a\\b", "a\nb", "\"x\""] {
            let err = pg("UTF8", bad).check().unwrap_err();
            assert!(err.starts_with("lc_collate `"), "{err}");
        }
        assert!(pg("UTF-8", "C").check().is_err());
        let my = |cs: &str, coll: &str| MysqlProperties {
            character_set: cs.into(),
            collation: coll.into(),
        };
        assert!(my("utf8mb4", "utf8mb4_uca1400_ai_ci").check().is_ok());
        assert!(my("utf8mb4 COLLATE x", "y").check().is_err());
        assert!(my("utf8mb4", "a`b").check().is_err());
    }

    #[test]
    fn create_clauses_refuse_what_fails_its_check() {
        assert_eq!(
            pg("LATIN1", "C").create_clauses().unwrap(),
            "TEMPLATE template0 ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C'"
        );
        let icu = PgProperties {
            locale_provider: Some(LocaleProvider::Icu),
            locale: Some("de-DE".into()),
            ..pg("UTF8", "C")
        };
        assert!(
            icu.create_clauses()
                .unwrap()
                .ends_with(" LOCALE_PROVIDER icu ICU_LOCALE 'de-DE'")
        );
        let err = pg("UTF8", "C' TEMPLATE x").create_clauses().unwrap_err();
        assert!(matches!(err, Error::Integrity(_)), "{err}");
        assert!(err.to_string().contains("lc_collate"), "{err}");
        let edited = MysqlProperties {
            character_set: "latin1; DROP DATABASE x".into(),
            collation: "y".into(),
        };
        assert!(matches!(edited.create_clauses(), Err(Error::Integrity(_))));
    }

    #[test]
    fn each_engine_reads_back_as_itself() {
        let p = DatabaseProperties::Postgres(PgProperties {
            locale_provider: Some(LocaleProvider::Icu),
            locale: Some("und".into()),
            ..pg("UTF8", "C")
        });
        let m = DatabaseProperties::Mysql(MysqlProperties {
            character_set: "utf8mb4".into(),
            collation: "utf8mb4_unicode_ci".into(),
        });
        for props in [p, m] {
            let text = serde_json::to_string(&props).unwrap();
            assert_eq!(
                serde_json::from_str::<DatabaseProperties>(&text).unwrap(),
                props
            );
        }
        let libc = serde_json::to_string(&pg("LATIN1", "C")).unwrap();
        assert_eq!(
            libc,
            r#"{"encoding":"LATIN1","lc_collate":"C","lc_ctype":"C"}"#
        );
    }
}
