//! Tests of access_log.
