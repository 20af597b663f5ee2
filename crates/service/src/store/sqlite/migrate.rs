//! The SQLite migrations, applied through rusqlite with sqlx's bookkeeping: the same
//! `_sqlx_migrations` table, rows and checksums `sqlx::migrate::Migrator` writes, so a file
//! migrated by the earlier sqlx backend (or by sqlx tooling) is recognised, and the other way
//! round.

use std::collections::HashMap;
use std::time::Instant;

use rusqlite::{Connection, OptionalExtension};
use sqlx::migrate::{MigrateError, Migration};

use crate::store::StoreError;
use crate::store::db::{EmbeddedMigration, migrator, refuse_retired};

/// sqlx's definition of its history table (sqlx-sqlite `ensure_migrations_table`).
const CREATE_HISTORY: &str = "CREATE TABLE IF NOT EXISTS _sqlx_migrations (
    version BIGINT PRIMARY KEY,
    description TEXT NOT NULL,
    installed_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    success BOOLEAN NOT NULL,
    checksum BLOB NOT NULL,
    execution_time BIGINT NOT NULL
)";

const HAS_HISTORY: &str =
    "SELECT name FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'";

/// What sqlx's migrator checks, in its order: a retired version (ours), a migration left
/// half-applied, an applied version this binary does not know, a changed checksum.
fn check_history(
    connection: &Connection,
    migrations: &[Migration],
) -> Result<HashMap<i64, Vec<u8>>, StoreError> {
    let has_history = connection
        .prepare_cached(HAS_HISTORY)?
        .query_row([], |_| Ok(()))
        .optional()?
        .is_some();
    let mut applied: HashMap<i64, Vec<u8>> = HashMap::new();
    if has_history {
        let mut versions = connection.prepare_cached("SELECT version FROM _sqlx_migrations")?;
        let versions: Vec<i64> = versions
            .query_map([], |row| row.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        refuse_retired(&versions)?;
    }
    connection.execute_batch(CREATE_HISTORY)?;
    let dirty: Option<i64> = connection
        .prepare_cached(
            "SELECT version FROM _sqlx_migrations WHERE success = false ORDER BY version LIMIT 1",
        )?
        .query_row([], |row| row.get(0))
        .optional()?;
    if let Some(version) = dirty {
        return Err(MigrateError::Dirty(version).into());
    }
    let mut rows = connection
        .prepare_cached("SELECT version, checksum FROM _sqlx_migrations ORDER BY version")?;
    for row in rows.query_map([], |row| Ok((row.get::<_, i64>(0)?, row.get(1)?)))? {
        let (version, checksum) = row?;
        applied.insert(version, checksum);
    }
    for version in applied.keys() {
        if !migrations.iter().any(|m| m.version == *version) {
            return Err(MigrateError::VersionMissing(*version).into());
        }
    }
    for migration in migrations {
        if let Some(checksum) = applied.get(&migration.version)
            && checksum[..] != migration.checksum[..]
        {
            return Err(MigrateError::VersionMismatch(migration.version).into());
        }
    }
    Ok(applied)
}

/// Checks the history (inside a write transaction, so a refused database is left as it was)
/// and says which migrations are missing.
pub(super) fn pending(
    connection: &Connection,
    embedded: &[EmbeddedMigration],
) -> Result<Vec<Migration>, StoreError> {
    let migrations: Vec<Migration> = migrator(embedded).iter().cloned().collect();
    let applied = check_history(connection, &migrations)?;
    Ok(migrations
        .into_iter()
        .filter(|m| !applied.contains_key(&m.version))
        .collect())
}

/// Applies one migration with its history row inside the open write transaction (one
/// transaction per migration, as sqlx does) and commits. The version is looked up again under
/// the write lock, so two processes migrating one file at once apply it once.
pub(super) fn apply_in_transaction(
    connection: &Connection,
    migration: &Migration,
) -> Result<(), StoreError> {
    let started = Instant::now();
    let applied_meanwhile = connection
        .prepare_cached("SELECT version FROM _sqlx_migrations WHERE version = ?")?
        .query_row([migration.version], |_| Ok(()))
        .optional()?
        .is_some();
    if !applied_meanwhile {
        connection
            .execute_batch(migration.sql.as_str())
            .map_err(|source| StoreError::MigrationFailed {
                version: migration.version,
                source: source.into(),
            })?;
        connection.execute(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, \
             execution_time) VALUES (?1, ?2, TRUE, ?3, -1)",
            (
                migration.version,
                &*migration.description,
                &*migration.checksum,
            ),
        )?;
    }
    connection.execute_batch("COMMIT")?;
    if !applied_meanwhile {
        #[allow(clippy::cast_possible_truncation)]
        let nanos = started.elapsed().as_nanos() as i64;
        // Outside the transaction, like sqlx: should another process hold the lock now, the
        // time is lost, which is harmless.
        connection
            .execute(
                "UPDATE _sqlx_migrations SET execution_time = ?1 WHERE version = ?2",
                (nanos, migration.version),
            )
            .ok();
    }
    Ok(())
}
