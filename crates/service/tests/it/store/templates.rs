//! Templates on both backends: syncing versions, their activity, descriptions, and the
//! versions the Node service wrote.

use super::*;

use status_check::template_files::TemplateSource;
use status_check::templates::TemplateRegistry;

use crate::harness::on_both_backends;

on_both_backends!(
    databases:
    shipped_versions_sync_in_version_order,
    sync_template_creates_then_leaves_an_identical_version_alone,
    sync_template_refuses_a_changed_version,
    sync_template_toggles_only_is_active,
    template_versions_are_listed_newest_first,
    descriptions_are_never_rewritten,
    node_versions_are_read,
    a_version_number_held_by_the_node_service_is_synced_under_the_next,
    a_newer_file_is_never_numbered_below_an_older_renumbered_one,
    a_renumbering_past_the_last_version_number_is_refused_by_name,
    a_changed_version_is_refused_naming_what_changed,
    a_name_mysql_finds_under_another_case_is_refused,
    an_unreadable_version_still_has_an_outline,
);

async fn sync_template_creates_then_leaves_an_identical_version_alone(db: &TestDb) {
    let now = at("2026-11-01T00:00:00Z");
    let both = template("both-phases", 1);
    let Synced::Created(id) = db.store.sync_template(&both, &cel, now).await.unwrap() else {
        panic!("expected Created");
    };
    assert_eq!(
        db.store.sync_template(&both, &cel, now).await.unwrap(),
        Synced::Unchanged(id)
    );
    let stored = db.store.template_by_id(id).await.unwrap().unwrap();
    assert_eq!(
        (stored.id, stored.version, stored.declared_version),
        (id, 1, Some(1))
    );
    assert_eq!(stored.definition, Ok(both));
    assert_eq!(newest_active(db, "both-phases").await, Some(stored));

    // Only a future phase, polling until the end, no default windows.
    let future_only = TemplateDefinition {
        poll_until_end: true,
        poller: PollerDefaults::default(),
        past: None,
        ..template("future-only", 1)
    };
    let Synced::Created(future_id) = db
        .store
        .sync_template(&future_only, &cel, now)
        .await
        .unwrap()
    else {
        panic!("expected Created");
    };
    let stored = db.store.template_by_id(future_id).await.unwrap().unwrap();
    assert_eq!(stored.definition, Ok(future_only));

    assert_eq!(
        db.raw
            .count("SELECT COUNT(*) FROM status_check_description")
            .await,
        2
    );
    assert_eq!(
        db.raw
            .count("SELECT COUNT(*) FROM status_check_template")
            .await,
        2
    );
    // One row per (template, phase, output), the rule in raw_expression.
    assert_eq!(
        db.raw
            .count("SELECT COUNT(*) FROM status_check_template_detail")
            .await,
        4 + 2
    );
    assert_eq!(
        db.raw
            .count(
                "SELECT COUNT(*) FROM status_check_template_detail \
                 WHERE phase = 'PAST' AND output = 'PASS' \
                   AND raw_expression = 'past.exists(e, e.name == ''CHARGING_STARTED'')'"
            )
            .await,
        1
    );
    assert_eq!(
        db.raw
            .count("SELECT COUNT(*) FROM status_check_template_ext")
            .await,
        2
    );
}

async fn sync_template_refuses_a_changed_version(db: &TestDb) {
    let now = at("2026-11-01T00:00:00Z");
    let original = template("changed", 1);
    let Synced::Created(id) = db.store.sync_template(&original, &cel, now).await.unwrap() else {
        panic!("expected Created");
    };
    let changes: [fn(&mut TemplateDefinition); 6] = [
        |t| t.past.as_mut().unwrap().pass = Some("true".into()),
        |t| t.future.as_mut().unwrap().fail = Some("true".into()),
        |t| t.past.as_mut().unwrap().depends_on.push("DOCKED".into()),
        |t| t.poller.future_interval = 60,
        |t| t.poll_until_end = true,
        |t| t.future = None,
    ];
    for change in changes {
        let mut changed = original.clone();
        change(&mut changed);
        assert_eq!(
            db.store.sync_template(&changed, &cel, now).await.unwrap(),
            Synced::Conflict {
                id,
                stored: Box::new(original.clone())
            }
        );
    }
    assert_eq!(
        db.store
            .template_by_id(id)
            .await
            .unwrap()
            .unwrap()
            .definition,
        Ok(original.clone())
    );
    // The description is not part of a version.
    let described = TemplateDefinition {
        description: "said differently".into(),
        ..original.clone()
    };
    assert_eq!(
        db.store.sync_template(&described, &cel, now).await.unwrap(),
        Synced::Unchanged(id)
    );
}

async fn sync_template_toggles_only_is_active(db: &TestDb) {
    let now = at("2026-11-01T00:00:00Z");
    let active = template("toggled", 1);
    let Synced::Created(id) = db.store.sync_template(&active, &cel, now).await.unwrap() else {
        panic!("expected Created");
    };
    let inactive = TemplateDefinition {
        is_active: false,
        ..active.clone()
    };
    assert_eq!(
        db.store.sync_template(&inactive, &cel, now).await.unwrap(),
        Synced::Unchanged(id)
    );
    let stored = db.store.template_by_id(id).await.unwrap().unwrap();
    assert_eq!(stored.definition, Ok(inactive));
    assert!(!stored.is_active);
    assert_eq!(newest_active(db, "toggled").await, None);
    assert_eq!(
        db.store.sync_template(&active, &cel, now).await.unwrap(),
        Synced::Unchanged(id)
    );
    assert_eq!(newest_active(db, "toggled").await.map(|t| t.id), Some(id));
}

async fn template_versions_are_listed_newest_first(db: &TestDb) {
    let now = at("2026-11-01T00:00:00Z");
    let mut ids = Vec::new();
    for (version, is_active) in [(2, true), (1, true), (3, false)] {
        let definition = TemplateDefinition {
            is_active,
            ..template("versions", version)
        };
        let Synced::Created(id) = db
            .store
            .sync_template(&definition, &cel, now)
            .await
            .unwrap()
        else {
            panic!("expected Created");
        };
        ids.push((version, id));
    }
    let versions = db.store.template_versions("versions").await.unwrap();
    let listed: Vec<(i64, bool)> = versions.iter().map(|v| (v.version, v.is_active)).collect();
    assert_eq!(listed, [(3, false), (2, true), (1, true)]);
    let active = newest_active(db, "versions").await.unwrap();
    assert_eq!(active.id, ids[0].1);
    // A check keeps its version, active or not.
    let inactive = db.store.template_by_id(ids[2].1).await.unwrap().unwrap();
    assert_eq!(inactive.version, 3);
    assert!(!inactive.is_active);

    assert!(
        db.store
            .template_versions("no-such-template")
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(db.store.template_by_id(999_999).await.unwrap(), None);
}

/// Micro-Managers' `script_node_status_check` points at the description row: it is inserted
/// once, never renamed or rewritten (SPEC §6).
async fn descriptions_are_never_rewritten(db: &TestDb) {
    let now = at("2026-11-01T00:00:00Z");
    db.store
        .sync_template(&template("described", 1), &cel, now)
        .await
        .unwrap();
    let v2 = TemplateDefinition {
        description: "said differently in version 2".into(),
        ..template("described", 2)
    };
    db.store.sync_template(&v2, &cel, now).await.unwrap();
    assert_eq!(
        db.raw
            .count(
                "SELECT COUNT(*) FROM status_check_description \
                 WHERE name = 'described' AND description = 'described, version 1'"
            )
            .await,
        1
    );
    assert_eq!(
        db.raw
            .count("SELECT COUNT(*) FROM status_check_description")
            .await,
        1
    );
}

/// A version the Node service wrote: its description, template row and one rule, the way it
/// stored them (dependencies as `[{"eventName": …}]`, no row of this service's own).
async fn node_version(db: &TestDb, name: &'static str, version: i64, rule: &'static str) -> i64 {
    db.raw
        .execute_text(
            "INSERT INTO status_check_description (name, description, created_at) \
             SELECT ?, 'Written by the Node service', '2025-01-01 00:00:00' \
             WHERE NOT EXISTS (SELECT 1 FROM status_check_description WHERE name = ?)",
            &[name, name],
        )
        .await;
    let version = version.to_string();
    db.raw
        .execute_text(
            "INSERT INTO status_check_template (template_description_id, \
             past_event_dependencies, future_event_dependencies, version, is_active, \
             poll_until_end, created_at) \
             SELECT id, '[{\"eventName\":\"CHARGING_STARTED\"}]', '[]', ?, TRUE, FALSE, \
             '2025-01-01 00:00:00' FROM status_check_description WHERE name = ?",
            &[&version, name],
        )
        .await;
    db.raw
        .execute_text(
            "INSERT INTO status_check_template_detail (template_id, phase, raw_expression, \
             output) \
             SELECT t.id, 'PAST', ?, 'PASS' FROM status_check_template t \
             JOIN status_check_description d ON d.id = t.template_description_id \
             WHERE d.name = ? AND t.version = ?",
            &[rule, name, &version],
        )
        .await;
    let versions = db.store.template_versions(name).await.unwrap();
    versions
        .iter()
        .find(|v| v.version.to_string() == version)
        .unwrap()
        .id
}

/// The rule text the Node service stored: EJS around JavaScript.
const EJS_RULE: &str = "<%= events.some(e => e.eventName === 'CHARGING_STARTED') %>";

async fn node_versions_are_read(db: &TestDb) {
    // A version another tool stored in CEL: read as the definition it holds.
    let id = node_version(db, "legacy", 1, "past.size() > 0").await;
    let expected = TemplateDefinition {
        name: "legacy".into(),
        version: 1,
        description: "Written by the Node service".into(),
        is_active: true,
        poll_until_end: false,
        poller: PollerDefaults::default(),
        past: Some(PhaseDefinition {
            depends_on: vec!["CHARGING_STARTED".into()],
            pass: Some("past.size() > 0".into()),
            fail: None,
            unknown: None,
        }),
        future: None,
    };
    let stored = db.store.template_by_id(id).await.unwrap().unwrap();
    assert_eq!(stored.definition, Ok(expected.clone()));
    assert_eq!(stored.declared_version, None);
    // The same template from a file is that version, not a conflicting one.
    assert_eq!(
        db.store
            .sync_template(&expected, &cel, now())
            .await
            .unwrap(),
        Synced::Unchanged(id)
    );
    // An EJS version is read as it is; whether it can run is the registry's question.
    let ejs = node_version(db, "node-only", 1, EJS_RULE).await;
    let stored = db.store.template_by_id(ejs).await.unwrap().unwrap();
    let definition = stored.definition.unwrap();
    assert_eq!(definition.past.unwrap().pass.as_deref(), Some(EJS_RULE));
    // One rule per (template, phase, output): the production unique key.
    let second = db
        .raw
        .try_execute(
            "INSERT INTO status_check_template_detail (template_id, phase, raw_expression, \
             output) SELECT template_id, phase, 'true', output FROM status_check_template_detail",
        )
        .await;
    assert!(second.is_err(), "a second PAST/PASS rule was accepted");
}

async fn a_version_number_held_by_the_node_service_is_synced_under_the_next(db: &TestDb) {
    let legacy_1 = node_version(db, "renumbered", 1, EJS_RULE).await;
    node_version(db, "renumbered", 2, EJS_RULE).await;
    let before = db.store.template_versions("renumbered").await.unwrap();
    let shipped = template("renumbered", 1);
    let Synced::CreatedAs {
        id,
        version,
        displaced_by,
    } = db.store.sync_template(&shipped, &cel, now()).await.unwrap()
    else {
        panic!("expected CreatedAs");
    };
    assert_eq!((version, displaced_by), (3, legacy_1));
    // Synced again (the next start-up): the same version, not another one.
    assert_eq!(
        db.store.sync_template(&shipped, &cel, now()).await.unwrap(),
        Synced::Unchanged(id)
    );
    let mut changed = shipped.clone();
    changed.poll_until_end = true;
    assert!(matches!(
        db.store.sync_template(&changed, &cel, now()).await.unwrap(),
        Synced::Conflict { id: conflict, .. } if conflict == id
    ));
    let stored = db.store.template_by_id(id).await.unwrap().unwrap();
    assert_eq!((stored.version, stored.declared_version), (3, Some(1)));
    // The description belongs to the name, and the name's row is the Node service's.
    assert_eq!(
        stored.definition,
        Ok(TemplateDefinition {
            version: 3,
            description: "Written by the Node service".into(),
            ..shipped
        })
    );
    // The file's version 3 finds 3 taken by the file's version 1: the next number again.
    let three = template("renumbered", 3);
    assert!(matches!(
        db.store.sync_template(&three, &cel, now()).await.unwrap(),
        Synced::CreatedAs { version: 4, .. }
    ));
    // The Node service's rows are as it wrote them.
    let after = db.store.template_versions("renumbered").await.unwrap();
    for legacy in &before {
        assert!(after.contains(legacy), "{legacy:?} was changed");
    }
    assert_eq!(newest_active(db, "renumbered").await.unwrap().version, 4);
}

/// Shipped versions are synced in version order, not file-name order: with the Node service
/// holding number 2, `x.v10.yaml` (which sorts first by name) must not be stored before
/// `x.v2.yaml` — that one would then take the highest number and be the active version.
async fn shipped_versions_sync_in_version_order(db: &TestDb) {
    node_version(db, "ordered", 2, EJS_RULE).await;
    let dir = tempfile::tempdir().unwrap();
    for version in [1, 2, 10] {
        let yaml = format!(
            "name: ordered\nversion: {version}\ndescription: version {version}\n\
             poller: {{pastInterval: 3600, futureInterval: 0}}\nresources:\n  pastEvents:\n    \
             dependsOn: [CHARGING_STARTED]\n    PASS: 'past.size() > {version}'\n"
        );
        std::fs::write(dir.path().join(format!("ordered.v{version}.yaml")), yaml).unwrap();
    }
    let registry = TemplateRegistry::new(
        db.store.clone(),
        Limits::default(),
        std::time::Duration::from_secs(60),
    );
    let source = TemplateSource::Dir(dir.path().to_owned());
    assert_eq!(registry.sync(&source).await.unwrap(), 3);
    let active = registry
        .active("ordered")
        .await
        .unwrap()
        .expect("a version");
    let rule = active
        .template
        .definition()
        .past
        .as_ref()
        .unwrap()
        .pass
        .clone();
    assert_eq!(
        rule.as_deref(),
        Some("past.size() > 10"),
        "the newest file is active"
    );
}

/// The Node service holds 1 and 3; the files are 1 and 2. File 1 goes under 4; file 2's own
/// number is free, but under it the older file would be the active version: 5.
async fn a_newer_file_is_never_numbered_below_an_older_renumbered_one(db: &TestDb) {
    let legacy_1 = node_version(db, "leapfrog", 1, EJS_RULE).await;
    node_version(db, "leapfrog", 3, EJS_RULE).await;
    let one = db
        .store
        .sync_template(&template("leapfrog", 1), &cel, now())
        .await
        .unwrap();
    assert!(
        matches!(one, Synced::CreatedAs { version: 4, displaced_by, .. } if displaced_by == legacy_1),
        "{one:?}"
    );
    let two = template("leapfrog", 2);
    let Synced::CreatedAs { id, version: 5, .. } =
        db.store.sync_template(&two, &cel, now()).await.unwrap()
    else {
        panic!("file 2 not stored above file 1's 4");
    };
    let active = newest_active(db, "leapfrog").await.unwrap();
    assert_eq!((active.id, active.declared_version), (id, Some(2)));
    // The next start-up finds both where they are.
    assert_eq!(
        db.store.sync_template(&two, &cel, now()).await.unwrap(),
        Synced::Unchanged(id)
    );
}

/// A renumbering that would pass the last number the column allows is refused with the
/// template named, not a driver's out-of-range error.
async fn a_renumbering_past_the_last_version_number_is_refused_by_name(db: &TestDb) {
    node_version(db, "full-up", 1, EJS_RULE).await;
    node_version(db, "full-up", 65_535, EJS_RULE).await;
    let refused = db
        .store
        .sync_template(&template("full-up", 1), &cel, now())
        .await
        .unwrap();
    assert_eq!(refused, Synced::NoNumberLeft);
    assert_eq!(
        db.store.template_versions("full-up").await.unwrap().len(),
        2
    );
}

/// A shipped file changed under a version number already stored: start-up is refused, and the
/// message says what differs, field by field — not only that something does.
async fn a_changed_version_is_refused_naming_what_changed(db: &TestDb) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("changed.v1.yaml");
    let yaml = |past: u32, rule: &str| {
        format!(
            "name: changed\nversion: 1\ndescription: d\n\
             poller: {{pastInterval: {past}, futureInterval: 0}}\nresources:\n  pastEvents:\n    \
             dependsOn: [CHARGING_STARTED]\n    PASS: '{rule}'\n"
        )
    };
    std::fs::write(&file, yaml(3600, "past.size() > 0")).unwrap();
    let registry = || {
        TemplateRegistry::new(
            db.store.clone(),
            Limits::default(),
            std::time::Duration::from_secs(60),
        )
    };
    let source = TemplateSource::Dir(dir.path().to_owned());
    assert_eq!(registry().sync(&source).await.unwrap(), 1);
    std::fs::write(&file, yaml(7200, "past.size() > 1")).unwrap();
    let refused = registry().sync(&source).await.unwrap_err().to_string();
    for expected in [
        "changed version 1",
        "resources.pastEvents.PASS",
        "poller",
        "3600",
        "7200",
    ] {
        assert!(
            refused.contains(expected),
            "{expected:?} missing: {refused}"
        );
    }
    assert!(!refused.contains("dependsOn"), "{refused}");
}

/// MySQL compares names without case (the production collation, unique key included): a
/// file's `case-check` would find the Node service's `Case-Check` and be stored under it —
/// then read back under a name no runnable template has. Refused, naming both; on SQLite
/// the names are different templates.
async fn a_name_mysql_finds_under_another_case_is_refused(db: &TestDb) {
    node_version(db, "Case-Check", 1, EJS_RULE).await;
    let synced = db
        .store
        .sync_template(&template("case-check", 1), &cel, now())
        .await
        .unwrap();
    if matches!(db.raw, crate::support::Raw::Mysql(_)) {
        assert_eq!(
            synced,
            Synced::NameTaken {
                stored: "Case-Check".into()
            }
        );
        assert_eq!(
            db.store
                .template_versions("Case-Check")
                .await
                .unwrap()
                .len(),
            1
        );
    } else {
        assert!(matches!(synced, Synced::Created(_)), "{synced:?}");
    }
}

/// Dependencies in a form this service does not read, and a rule row of an unknown output:
/// no definition, but an outline a stand-in can be made of — the flags, a future phase (a
/// rule row names it) with no dependencies, the past phase's as stored.
async fn an_unreadable_version_still_has_an_outline(db: &TestDb) {
    let id = node_version(db, "odd", 1, EJS_RULE).await.to_string();
    db.raw
        .execute_text(
            "UPDATE status_check_template SET future_event_dependencies = 'DOOR_OPENED,DOOR_CLOSED', \
             poll_until_end = TRUE WHERE id = ?",
            &[&id],
        )
        .await;
    db.raw
        .execute_text(
            "INSERT INTO status_check_template_detail (template_id, phase, raw_expression, \
             output) VALUES (?, 'FUTURE', 'x', 'MAYBE')",
            &[&id],
        )
        .await;
    let stored = db
        .store
        .template_by_id(id.parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    let reason = stored.definition.unwrap_err();
    assert!(reason.contains("future_dependencies"), "{reason}");
    let outline = stored.outline;
    assert!(outline.poll_until_end);
    assert_eq!(
        outline.past.map(|p| (p.depends_on, p.pass)),
        Some((vec!["CHARGING_STARTED".to_owned()], None))
    );
    assert_eq!(outline.future.map(|f| f.depends_on), Some(vec![]));
}
