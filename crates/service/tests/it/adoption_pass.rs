//! The adoption pass over the checks the Node service left open (SPEC §6.1): what it cannot
//! read or adopt is passed over, a check whose step Micro-Managers answers unusably is asked
//! for again apart from the pass, and a finished pass does not read this service's own checks
//! again. (Adoption itself, and what follows it: takeover.rs.)

use std::sync::Arc;

use status_check::Deps;
use status_check::checks::adoption::{Adoption, AdoptionConfig};
use status_check::clock::ManualClock;
use status_check::upstream::UpstreamConfig;
use status_check::upstream::megazord::HttpMegazord;
use status_check::upstream::micro_managers::HttpMicroManagers;
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

use crate::harness::{Backend, on_both_backends, step_json};
use crate::lifecycle::{NEXT, at};
use crate::support::TestDb;
use crate::takeover::{NodeCheck, node_check, node_template, open_charging_check};

const ROBOT: i64 = 42;

/// The adoption pass passes over a Node row it cannot read (a phase neither service writes),
/// reported once, and adopts the check after it. Once a pass has finished, the next starts
/// after the newest check there was at the previous one's end — so this service's own checks
/// are not read again every minute — and a Node check added since is still adopted.
pub async fn the_adoption_pass_passes_over_what_it_cannot_read_and_its_own_checks(
    backend: Backend,
) {
    let Some(db) = backend.database().await else {
        return;
    };
    let legacy = node_template(&db.raw, "robot-is-charging", 1, "CHARGING_STARTED", false).await;
    let unreadable = NodeCheck {
        template_id: legacy,
        step_id: 143,
        phase: "WAITING",
        result: "PENDING",
        next_step_id: None,
        subscription_id: 3021,
        records: vec![],
    };
    node_check(&db, unreadable).await;
    let open = open_charging_check(&db, legacy, 3022).await;
    let own_template = crate::store::synced_template(&db, "own").await;
    let own = crate::store::create(&db, crate::store::new_check(own_template, ROBOT)).await;
    let own = crate::store::created_new(own.unwrap()).id;
    assert!(own > open);

    let micro_managers = wiremock::MockServer::start().await;
    step_answered(&micro_managers, 123).await;
    let (adoption, clock) = adoption_over(&db, &micro_managers);

    let tick = adoption.tick_once().await.unwrap();
    assert_eq!((tick.adopted, tick.unadoptable), (1, 1), "{tick:?}");
    assert_eq!(adoption.resumes_after(), open);
    clock.advance(chrono::TimeDelta::minutes(2));
    let tick = adoption.tick_once().await.unwrap();
    assert_eq!((tick.ran, tick.adopted, tick.unadoptable), (true, 0, 0));
    assert_eq!(
        adoption.resumes_after(),
        own,
        "past this service's own checks"
    );

    let later = open_charging_check(&db, legacy, 3023).await;
    clock.advance(chrono::TimeDelta::minutes(2));
    let tick = adoption.tick_once().await.unwrap();
    assert_eq!(tick.adopted, 1, "{tick:?}");
    assert_eq!(adoption.resumes_after(), later);
}

/// Micro-Managers answering one check's step with something unusable (a 403, a body of the
/// wrong shape) is that check's problem, not Micro-Managers being down: the pass adopts the
/// checks after it and goes on, and that check alone is asked for again after `retry_after`.
pub async fn one_unusable_step_answer_does_not_hold_up_the_checks_after_it(backend: Backend) {
    let Some(db) = backend.database().await else {
        return;
    };
    let legacy = node_template(&db.raw, "robot-is-charging", 1, "CHARGING_STARTED", false).await;
    let refused = open_charging_check(&db, legacy, 3031).await;
    let at_step_124 = |subscription_id| NodeCheck {
        template_id: legacy,
        step_id: 124,
        phase: "FUTURE",
        result: "PENDING",
        next_step_id: None,
        subscription_id,
        records: vec![],
    };
    let second = node_check(&db, at_step_124(3032)).await;
    let third = node_check(&db, at_step_124(3033)).await;
    assert!(refused < second && second < third);

    let micro_managers = wiremock::MockServer::start().await;
    // The first answer for step 123 is a 403; later ones, and step 124's, the step.
    Mock::given(method("GET"))
        .and(path(format!(
            "/internal/v5/scripts/robots/{ROBOT}/scripts/steps/123"
        )))
        .respond_with(ResponseTemplate::new(403))
        .up_to_n_times(1)
        .mount(&micro_managers)
        .await;
    step_answered(&micro_managers, 123).await;
    step_answered(&micro_managers, 124).await;
    let (adoption, clock) = adoption_over(&db, &micro_managers);

    let tick = adoption.tick_once().await.unwrap();
    assert_eq!((tick.adopted, tick.deferred), (2, 1), "{tick:?}");
    assert_eq!(adoption.resumes_after(), third, "the pass went on past it");
    clock.advance(chrono::TimeDelta::seconds(14));
    assert!(
        !adoption.tick_once().await.unwrap().ran,
        "not before retry_after"
    );
    clock.advance(chrono::TimeDelta::seconds(1));
    let tick = adoption.tick_once().await.unwrap();
    assert_eq!((tick.adopted, tick.deferred), (1, 0), "{tick:?}");
    let asked = |step: &'static str| {
        let micro_managers = &micro_managers;
        async move {
            let requests = micro_managers.received_requests().await.unwrap();
            requests
                .iter()
                .filter(|r| r.url.path().ends_with(step))
                .count()
        }
    };
    assert_eq!(asked("/steps/123").await, 2);
    assert_eq!(
        asked("/steps/124").await,
        2,
        "once for each check at step 124: the adopted ones are not read again"
    );
}

/// The checks deferred alone are asked for again a batch at a time, round the set: one whose
/// answer stays unusable does not keep the others from being asked.
pub async fn unusable_answers_that_last_do_not_starve_the_other_retries(backend: Backend) {
    let Some(db) = backend.database().await else {
        return;
    };
    let legacy = node_template(&db.raw, "robot-is-charging", 1, "CHARGING_STARTED", false).await;
    let refused_for_good = open_charging_check(&db, legacy, 3051).await;
    let at_step_124 = NodeCheck {
        template_id: legacy,
        step_id: 124,
        phase: "FUTURE",
        result: "PENDING",
        next_step_id: None,
        subscription_id: 3052,
        records: vec![],
    };
    let refused_once = node_check(&db, at_step_124).await;
    let micro_managers = wiremock::MockServer::start().await;
    let steps = format!("/internal/v5/scripts/robots/{ROBOT}/scripts/steps");
    Mock::given(method("GET"))
        .and(path(format!("{steps}/123")))
        .respond_with(ResponseTemplate::new(403))
        .mount(&micro_managers)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("{steps}/124")))
        .respond_with(ResponseTemplate::new(403))
        .up_to_n_times(1)
        .mount(&micro_managers)
        .await;
    step_answered(&micro_managers, 124).await;
    let config = AdoptionConfig {
        batch: 1,
        ..AdoptionConfig::default()
    };
    let (adoption, clock) = adoption_with(&db, &micro_managers, config);
    // The pass, a check a step: both deferred alone.
    for _ in 0..3 {
        adoption.tick_once().await.unwrap();
    }
    assert!(adoption.resumes_after() >= refused_once);
    // Retries, one check each 15 s: the first, then the second — adopted.
    let mut adopted = 0;
    for _ in 0..2 {
        clock.advance(chrono::TimeDelta::seconds(15));
        adopted += adoption.tick_once().await.unwrap().adopted;
    }
    assert_eq!(adopted, 1, "the second check was asked for again");
    let stored = db.store.get_check(refused_once).await.unwrap().unwrap();
    assert_ne!(stored.provenance, status_check::store::Provenance::NodeOnly);
    let still = db.store.get_check(refused_for_good).await.unwrap().unwrap();
    assert_eq!(still.provenance, status_check::store::Provenance::NodeOnly);
}

/// Micro-Managers answers step `step` of robot 42 (a robot-is-charging step) from now on.
async fn step_answered(micro_managers: &wiremock::MockServer, step: i64) {
    Mock::given(method("GET"))
        .and(path(format!(
            "/internal/v5/scripts/robots/{ROBOT}/scripts/steps/{step}"
        )))
        .respond_with(ResponseTemplate::new(200).set_body_json(step_json(
            step,
            "robot-is-charging",
            0,
            0,
            NEXT,
        )))
        .mount(micro_managers)
        .await;
}

/// The adoption pass over `db`, asking `micro_managers` for steps, on a manual clock from
/// 08:05.
fn adoption_over(
    db: &TestDb,
    micro_managers: &wiremock::MockServer,
) -> (Adoption, Arc<ManualClock>) {
    adoption_with(db, micro_managers, AdoptionConfig::default())
}

fn adoption_with(
    db: &TestDb,
    micro_managers: &wiremock::MockServer,
    config: AdoptionConfig,
) -> (Adoption, Arc<ManualClock>) {
    let upstream = UpstreamConfig::new(micro_managers.uri());
    let clock = Arc::new(ManualClock::new(at("2026-11-20T08:05:00Z")));
    let deps = Deps {
        store: db.store.clone(),
        micro_managers: Arc::new(HttpMicroManagers::new(&upstream).unwrap()),
        megazord: Arc::new(HttpMegazord::new(&upstream).unwrap()),
        clock: clock.clone(),
        queue: None,
    };
    (Adoption::new(&deps, config), clock)
}

on_both_backends!(
    the_adoption_pass_passes_over_what_it_cannot_read_and_its_own_checks,
    one_unusable_step_answer_does_not_hold_up_the_checks_after_it,
    unusable_answers_that_last_do_not_starve_the_other_retries,
);
