//! The one diesel schema, in types both backends share (see `migrations/sqlite` and `migrations/postgres`).

diesel::table! {
    api_users (id) {
        id -> BigInt,
        username -> Text,
        password_hash -> Text,
        role -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    api_tokens (id) {
        id -> BigInt,
        name -> Text,
        token_hash -> Text,
        created_at -> Timestamp,
        last_used_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    soap_sessions (id_hash) {
        id_hash -> Text,
        user_id -> BigInt,
        created_at -> Timestamp,
        last_seen_at -> Timestamp,
        ended_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    requests (id) {
        id -> BigInt,
        operation -> Text,
        message_seq_id -> BigInt,
        caller -> Text,
        body -> Nullable<Text>,
        body_hash -> Text,
        line_count -> Integer,
        state -> Text,
        attempts -> Integer,
        lease_owner -> Nullable<Text>,
        lease_expires_at -> Nullable<Timestamp>,
        next_attempt_at -> Timestamp,
        received_at -> Timestamp,
        processed_at -> Nullable<Timestamp>,
        last_error -> Nullable<Text>,
        receipts -> Integer,
        conflict -> Bool,
    }
}

diesel::table! {
    request_lines (request_id, line_no) {
        request_id -> BigInt,
        line_no -> Integer,
        sku -> Text,
        source -> Text,
        qty -> Integer,
        seq -> Nullable<BigInt>,
        last_order_exported -> Nullable<Timestamp>,
    }
}

diesel::table! {
    stock (sku, source) {
        sku -> Text,
        source -> Text,
        qty -> Integer,
        last_seq -> BigInt,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    imports (request_id) {
        request_id -> BigInt,
        operation -> Text,
        message_seq_id -> BigInt,
        successes -> Integer,
        duplicates -> Integer,
        superseded -> Integer,
        failures -> Integer,
        created_at -> Timestamp,
        viewed_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    import_lines (request_id, line_no) {
        request_id -> BigInt,
        line_no -> Integer,
        seq -> Nullable<BigInt>,
        sku -> Text,
        source -> Text,
        units_received -> Integer,
        units_adjusted_orders -> Integer,
        units_adjusted_quotes -> Integer,
        stored_qty -> Nullable<Integer>,
        result -> Text,
        message -> Text,
        created_at -> Timestamp,
        reference -> Nullable<Text>,
    }
}

diesel::table! {
    rejections (id) {
        id -> BigInt,
        received_at -> Timestamp,
        caller -> Nullable<Text>,
        operation -> Nullable<Text>,
        reason -> Text,
        body_excerpt -> Text,
    }
}

diesel::joinable!(soap_sessions -> api_users (user_id));
diesel::joinable!(request_lines -> requests (request_id));
diesel::joinable!(imports -> requests (request_id));
diesel::joinable!(import_lines -> imports (request_id));

diesel::allow_tables_to_appear_in_same_query!(
    api_users,
    api_tokens,
    soap_sessions,
    requests,
    request_lines,
    stock,
    imports,
    import_lines,
    rejections,
    request_shipments,
    request_tracking,
    access_tokens,
    orders,
    order_lines,
    products,
    reservations,
    reservation_lines,
    shipments,
    shipment_lines,
    shipment_tracking,
    feed_events,
    feed_counter,
    exports,
    export_lines,
    export_breakers,
    outbound_tasks,
    outbound_task_actions,
);

diesel::table! {
    request_shipments (request_id) {
        request_id -> BigInt,
        order_increment_id -> Text,
        comment -> Nullable<Text>,
        notify_customer -> Bool,
        include_comment -> Bool,
        courier_name -> Nullable<Text>,
        service_name -> Nullable<Text>,
        date_shipped -> Nullable<Timestamp>,
    }
}

diesel::table! {
    request_tracking (request_id, position) {
        request_id -> BigInt,
        position -> Integer,
        tracking_number -> Text,
    }
}

diesel::table! {
    access_tokens (token_hash) {
        token_hash -> Text,
        user_id -> BigInt,
        created_at -> Timestamp,
        expires_at -> Timestamp,
    }
}

diesel::joinable!(request_shipments -> requests (request_id));
diesel::joinable!(request_tracking -> requests (request_id));
diesel::joinable!(access_tokens -> api_users (user_id));

diesel::table! {
    orders (id) {
        id -> BigInt,
        increment_id -> Text,
        status -> Text,
        source -> Text,
        is_virtual -> Bool,
        document -> Text,
        ordered_at -> Timestamp,
        received_at -> Timestamp,
        updated_at -> Timestamp,
        exported_at -> Nullable<Timestamp>,
        export_status -> Text,
        /// The order this one was split from.
        parent_id -> Nullable<BigInt>,
        /// The last push number a channel task of this order took.
        push_sequence -> BigInt,
    }
}

diesel::table! {
    order_lines (order_id, line_no) {
        order_id -> BigInt,
        line_no -> Integer,
        sku -> Text,
        name -> Text,
        qty -> Integer,
        qty_shipped -> Integer,
    }
}

diesel::table! {
    products (sku) {
        sku -> Text,
        name -> Text,
        document -> Text,
        updated_at -> Timestamp,
        exported_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    reservations (quote_id) {
        quote_id -> Text,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    reservation_lines (quote_id, sku) {
        quote_id -> Text,
        sku -> Text,
        qty -> Integer,
    }
}

diesel::table! {
    shipments (id) {
        id -> BigInt,
        /// The request that created it; `NULL` once retention deleted that request.
        request_id -> Nullable<BigInt>,
        order_id -> BigInt,
        message_seq_id -> BigInt,
        courier_name -> Nullable<Text>,
        service_name -> Nullable<Text>,
        comment -> Nullable<Text>,
        notify_customer -> Bool,
        include_comment -> Bool,
        date_shipped -> Nullable<Timestamp>,
        created_at -> Timestamp,
    }
}

diesel::table! {
    shipment_lines (shipment_id, line_no) {
        shipment_id -> BigInt,
        line_no -> Integer,
        sku -> Text,
        qty -> Integer,
    }
}

diesel::table! {
    shipment_tracking (shipment_id, position) {
        shipment_id -> BigInt,
        position -> Integer,
        tracking_number -> Text,
    }
}

diesel::table! {
    feed_events (id) {
        id -> BigInt,
        kind -> Text,
        payload -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    feed_counter (id) {
        id -> Integer,
        last_id -> BigInt,
    }
}

diesel::table! {
    /// The row `GET /ready` rewrites to check that writes commit.
    ready_probe (id) {
        id -> Integer,
        checked_at -> Timestamp,
    }
}

diesel::joinable!(order_lines -> orders (order_id));
diesel::joinable!(reservation_lines -> reservations (quote_id));
diesel::joinable!(shipments -> orders (order_id));
diesel::joinable!(shipment_lines -> shipments (shipment_id));
diesel::joinable!(shipment_tracking -> shipments (shipment_id));

diesel::table! {
    exports (id) {
        id -> BigInt,
        message_id -> Text,
        kind -> Text,
        operation -> Text,
        url -> Text,
        started_at -> Timestamp,
        finished_at -> Timestamp,
        outcome -> Text,
        error -> Nullable<Text>,
        successes -> Integer,
        duplicates -> Integer,
        failures -> Integer,
        request_xml -> Nullable<Text>,
        response_body -> Nullable<Text>,
        http_status -> Nullable<Integer>,
        items -> Integer,
    }
}

diesel::table! {
    export_lines (export_id, line_no) {
        export_id -> BigInt,
        line_no -> Integer,
        reference -> Text,
        result -> Text,
        message -> Text,
        detail -> Nullable<Text>,
    }
}

diesel::table! {
    export_breakers (kind) {
        kind -> Text,
        consecutive_failures -> Integer,
        paused_until -> Nullable<Timestamp>,
    }
}

diesel::joinable!(export_lines -> exports (export_id));

diesel::table! {
    request_actions (id) {
        id -> BigInt,
        request_id -> BigInt,
        action -> Text,
        actor -> Text,
        at -> Timestamp,
        previous_state -> Text,
        previous_attempts -> Integer,
        previous_error -> Nullable<Text>,
        note -> Nullable<Text>,
    }
}

diesel::table! {
    replaced_import_lines (action_id, line_no) {
        action_id -> BigInt,
        line_no -> Integer,
        seq -> Nullable<BigInt>,
        sku -> Text,
        source -> Text,
        units_received -> Integer,
        units_adjusted_orders -> Integer,
        units_adjusted_quotes -> Integer,
        stored_qty -> Nullable<Integer>,
        result -> Text,
        message -> Text,
        created_at -> Timestamp,
        reference -> Nullable<Text>,
    }
}

diesel::table! {
    request_errors (id) {
        id -> BigInt,
        request_id -> BigInt,
        attempt -> Integer,
        at -> Timestamp,
        error -> Text,
    }
}

diesel::table! {
    credential_scrub (table_name) {
        table_name -> Text,
        next_id -> BigInt,
        last_id -> BigInt,
    }
}

diesel::joinable!(request_actions -> requests (request_id));
diesel::joinable!(replaced_import_lines -> request_actions (action_id));
diesel::joinable!(request_errors -> requests (request_id));
diesel::allow_tables_to_appear_in_same_query!(
    requests,
    request_actions,
    replaced_import_lines,
    request_errors,
);

diesel::table! {
    /// The outbound queue: one row per thing to send (see `crate::outbound`).
    outbound_tasks (id) {
        id -> BigInt,
        channel -> Text,
        action -> Text,
        subject -> Text,
        state -> Text,
        attempts -> Integer,
        run_after -> Nullable<Timestamp>,
        lease_owner -> Nullable<Text>,
        lease_expires_at -> Nullable<Timestamp>,
        last_error -> Nullable<Text>,
        done_at -> Nullable<Timestamp>,
        handled_by -> Nullable<Text>,
        handled_at -> Nullable<Timestamp>,
        note -> Nullable<Text>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        /// The batch id a ticketing channel answered a push with.
        batch_id -> Nullable<Text>,
        /// The ticket id of that batch, once read.
        ticket_id -> Nullable<Text>,
        /// The order's push number this task carries (kept across retries).
        sequence -> Nullable<BigInt>,
        /// When the push was accepted for processing (the ticket's deadline runs from it).
        sent_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    /// Who resent or dismissed an outbound task.
    outbound_task_actions (id) {
        id -> BigInt,
        task_id -> BigInt,
        action -> Text,
        actor -> Text,
        reason -> Nullable<Text>,
        at -> Timestamp,
    }
}

diesel::joinable!(outbound_task_actions -> outbound_tasks (task_id));

diesel::table! {
    /// When each background job last ran well and last failed, in any process.
    background_runs (job) {
        job -> Text,
        last_ok_at -> Nullable<Timestamp>,
        last_failed_at -> Nullable<Timestamp>,
        last_error -> Nullable<Text>,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    /// Incidents the alert monitor opened and resolved, one unresolved per key.
    incidents (id) {
        id -> BigInt,
        key -> Text,
        state -> Text,
        summary -> Text,
        count -> BigInt,
        first_error -> Nullable<Text>,
        items -> Text,
        opened_at -> Timestamp,
        clear_since -> Nullable<Timestamp>,
        resolved_at -> Nullable<Timestamp>,
        message_id -> Nullable<Text>,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    /// Alert mails sent, for the hourly limit across processes.
    alert_mails (id) {
        id -> BigInt,
        sent_at -> Timestamp,
        subject -> Text,
    }
}

diesel::table! {
    /// The highest feed id retention deleted (one row).
    feed_pruned (id) {
        id -> Integer,
        through_id -> BigInt,
    }
}

diesel::table! {
    /// Console sessions (only the cookie's SHA-256 is stored).
    console_sessions (id_hash) {
        id_hash -> Text,
        user_id -> BigInt,
        created_at -> Timestamp,
        last_seen_at -> Timestamp,
    }
}

diesel::table! {
    /// Until when each console user has seen the failures.
    console_seen (user_id) {
        user_id -> BigInt,
        seen_at -> Timestamp,
    }
}

diesel::table! {
    /// Every support action, from the console or the CLI.
    audit_log (id) {
        id -> BigInt,
        at -> Timestamp,
        actor -> Text,
        via -> Text,
        action -> Text,
        subject_kind -> Text,
        subjects -> Text,
        filter -> Nullable<Text>,
        count -> BigInt,
        note -> Nullable<Text>,
    }
}

diesel::table! {
    /// Every order file a file channel wrote and every shipment file it read.
    file_exchanges (id) {
        id -> BigInt,
        channel -> Text,
        /// `out` (an order file) or `in` (a shipment file).
        direction -> Text,
        /// The final name (out) or the name it arrived under (in).
        name -> Text,
        state -> Text,
        size -> Nullable<BigInt>,
        /// SHA-256 of the bytes, hex.
        hash -> Nullable<Text>,
        /// Orders in an order file.
        orders -> Integer,
        /// The shipment request a shipment file was stored as.
        request_id -> Nullable<BigInt>,
        order_increment_id -> Nullable<Text>,
        /// The document written (out), or the file as read when it failed (in).
        body -> Nullable<Text>,
        error -> Nullable<Text>,
        lease_owner -> Nullable<Text>,
        lease_expires_at -> Nullable<Timestamp>,
        /// Runs that found it unfinished.
        runs -> Integer,
        /// When support saw a failed file.
        seen_at -> Nullable<Timestamp>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        finished_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    /// The host key a trust-on-first-use file channel saw first.
    sftp_host_keys (channel) {
        channel -> Text,
        host -> Text,
        port -> Integer,
        fingerprint -> Text,
        first_seen_at -> Timestamp,
    }
}

diesel::table! {
    /// What is wrong with a file channel right now, as its last run found it.
    channel_troubles (channel, trouble) {
        channel -> Text,
        trouble -> Text,
        detail -> Text,
        since -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::joinable!(console_sessions -> api_users (user_id));
diesel::joinable!(console_seen -> api_users (user_id));
diesel::allow_tables_to_appear_in_same_query!(console_sessions, api_users);
diesel::allow_tables_to_appear_in_same_query!(console_seen, api_users);
