//! Diesel table definitions, shared by both backends (the migrations in `migrations/sqlite`
//! and `migrations/postgres` create the same columns).

diesel::table! {
    jobs (id) {
        id -> BigInt,
        stage -> Text,
        state -> Text,
        data_a -> Nullable<Text>,
        data_b -> Nullable<Text>,
        data_c -> Nullable<Text>,
        data_d -> Nullable<Text>,
        data_e -> Nullable<Text>,
        result -> Nullable<Text>,
        lease_owner -> Nullable<Text>,
        lease_token -> BigInt,
        lease_expires_at -> Nullable<BigInt>,
        attempts -> Integer,
        flags -> Integer,
        error -> Nullable<Text>,
        created_at -> BigInt,
        updated_at -> BigInt,
        completed_at -> Nullable<BigInt>,
        retry_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    workers (token) {
        token -> Text,
        display_name -> Text,
        stage -> Text,
        nickname -> Text,
        progress -> Text,
        jobs_completed -> BigInt,
        first_seen -> BigInt,
        last_seen -> BigInt,
        lease_ttl_ms -> BigInt,
        job_id -> Nullable<BigInt>,
        lease_token -> Nullable<BigInt>,
    }
}

diesel::table! {
    leaderboard (nickname) {
        nickname -> Text,
        jobs_completed -> BigInt,
    }
}

diesel::table! {
    job_events (id) {
        id -> BigInt,
        job_id -> BigInt,
        stage -> Text,
        kind -> Text,
        worker -> Nullable<Text>,
        at -> BigInt,
        detail -> Nullable<Text>,
    }
}

diesel::table! {
    paused_stages (stage) {
        stage -> Text,
        paused_at -> BigInt,
        paused_by -> Text,
    }
}

diesel::table! {
    admin_actions (id) {
        id -> BigInt,
        at -> BigInt,
        actor -> Text,
        action -> Text,
        detail -> Text,
    }
}

diesel::allow_tables_to_appear_in_same_query!(jobs, workers, leaderboard, job_events, paused_stages, admin_actions);
