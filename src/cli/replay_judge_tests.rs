//! Tests of replay_judge.
