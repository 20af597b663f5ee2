//! A database this service never migrated — the Node service's, before the cut-over — read as
//! if this service's own tables were there and empty: a backtest (SPEC §14) can then replay
//! the Node service's checks before anything of this service has run. The reads join this
//! service's tables with `LEFT JOIN`; here each such join reads a one-row derived table of
//! NULLs that matches nothing, so every check reads as one the Node service wrote.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;

use super::StoreError;
use super::db::{Arg, Db, Dialect, Done, Mode, PerDialect, Tx};

/// The table whose presence tells a migrated database from one this service never touched.
const PROBE: PerDialect = PerDialect {
    mysql: "SELECT COUNT(*) AS n FROM information_schema.tables \
            WHERE table_schema = DATABASE() AND table_name = 'status_check_ext'",
    sqlite: "SELECT COUNT(*) AS n FROM sqlite_master \
             WHERE type = 'table' AND name = 'status_check_ext'",
};

/// Each join of this service's own tables, as the reads write it, and the same join over no
/// rows (the columns the reads take from it, all NULL).
const OWN_JOINS: [(&str, &str); 3] = [
    (
        "LEFT JOIN status_check_ext e ON e.status_check_id = sc.id ",
        "LEFT JOIN (SELECT NULL AS status_check_id, NULL AS planned_at, NULL AS anchor_at, \
         NULL AS past_seconds, NULL AS future_seconds, NULL AS next_pass, NULL AS next_fail, \
         NULL AS next_unknown, NULL AS notification_seq, NULL AS adopted_at, \
         NULL AS created_at, NULL AS updated_at) e ON 1 = 0 ",
    ),
    (
        "LEFT JOIN status_check_template_ext x ON x.status_check_template_id = t.id ",
        "LEFT JOIN (SELECT NULL AS status_check_template_id, NULL AS past_interval, \
         NULL AS future_interval, NULL AS declared_version) x ON 1 = 0 ",
    ),
    (
        "LEFT JOIN status_check_record_event ev ON ev.record_id = r.id \
         AND ev.record_phase = r.phase ",
        "LEFT JOIN (SELECT NULL AS record_id, NULL AS record_phase, NULL AS event_created_at, \
         NULL AS `level`, NULL AS reference_id) ev ON 1 = 0 ",
    ),
];

/// Whether `db` holds this service's own tables (it was migrated).
pub(crate) async fn has_own_tables<D: Db>(db: &D) -> Result<bool, StoreError> {
    let mut tx = db.begin(Mode::Read).await?;
    let present = match tx.fetch_optional(db.sql(&PROBE), Vec::new()).await? {
        Some(row) => super::db::SqlRow::int(&row, "n")? > 0,
        None => false,
    };
    tx.commit().await?;
    Ok(present)
}

/// `sql` with every join of this service's own tables over no rows; each text rewritten once
/// per process (the `Tx` seam takes `&'static str`).
fn without_own_tables(sql: &'static str) -> &'static str {
    static REWRITTEN: Mutex<Option<HashMap<&'static str, &'static str>>> = Mutex::new(None);
    if !OWN_JOINS.iter().any(|(join, _)| sql.contains(join)) {
        return sql;
    }
    let mut rewritten = REWRITTEN.lock().unwrap_or_else(|e| e.into_inner());
    let rewritten = rewritten.get_or_insert_with(HashMap::new);
    rewritten.entry(sql).or_insert_with(|| {
        let text = OWN_JOINS
            .iter()
            .fold(sql.to_owned(), |text, (join, empty)| {
                text.replace(join, empty)
            });
        Box::leak(text.into_boxed_str())
    })
}

/// A backend read as if this service's own tables were empty.
pub(crate) struct ProductionOnly<'a, D>(pub(crate) &'a D);

#[async_trait]
impl<D: Db> Db for ProductionOnly<'_, D> {
    type Tx = ProductionOnlyTx<D::Tx>;

    async fn begin(&self, mode: Mode) -> Result<Self::Tx, StoreError> {
        Ok(ProductionOnlyTx(self.0.begin(mode).await?))
    }

    async fn apply_migrations(&self) -> Result<(), StoreError> {
        self.0.apply_migrations().await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.0.ping().await
    }

    fn operation_timeout(&self) -> std::time::Duration {
        self.0.operation_timeout()
    }

    fn dialect(&self) -> Dialect {
        self.0.dialect()
    }
}

/// A transaction of [`ProductionOnly`]: each statement rewritten, then the backend's.
pub(crate) struct ProductionOnlyTx<T>(T);

#[async_trait]
impl<T: Tx> Tx for ProductionOnlyTx<T> {
    type Row = T::Row;

    async fn execute(&mut self, sql: &'static str, args: Vec<Arg>) -> Result<Done, StoreError> {
        self.0.execute(without_own_tables(sql), args).await
    }

    async fn fetch_all(
        &mut self,
        sql: &'static str,
        args: Vec<Arg>,
    ) -> Result<Vec<Self::Row>, StoreError> {
        self.0.fetch_all(without_own_tables(sql), args).await
    }

    async fn commit(self) -> Result<(), StoreError> {
        self.0.commit().await
    }

    async fn rollback(self) -> Result<(), StoreError> {
        self.0.rollback().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every read a backtest makes names none of this service's tables once rewritten — the
    /// joins as the reads write them are the ones [`OWN_JOINS`] knows.
    #[test]
    fn the_backtests_reads_name_no_table_of_this_service() {
        let own = [
            "status_check_ext",
            "status_check_template_ext",
            "status_check_record_event",
        ];
        let reads = [
            super::super::check_reads::ended_checks_sql(1, 0, false),
            super::super::check_reads::ended_checks_sql(1, 2, false),
            super::super::check_reads::ended_checks_sql(1, 0, true),
            super::super::templates::SELECT_VERSIONS_BY_NAME,
            super::super::check_reads::SELECT_RECORDS_OF_CHECKS
                .for_ids(&[1, 2, 3])
                .0,
        ];
        for read in reads {
            let rewritten = without_own_tables(read);
            for table in own {
                assert!(!rewritten.contains(table), "{table} in {rewritten}");
            }
        }
        // Unchanged where there is nothing to rewrite, and the same text every time.
        assert_eq!(without_own_tables("SELECT 1"), "SELECT 1");
        let read = super::super::templates::SELECT_VERSIONS_BY_NAME;
        assert!(std::ptr::eq(
            without_own_tables(read),
            without_own_tables(read)
        ));
    }
}
