//! Every behaviour of `Process` under the `forkserver` start method (the bodies live in
//! `tests/support/mod.rs`; `IPC_START_METHOD` narrows a run to one method).

mod support;

use proc_spawn::StartMethod;

matrix!(StartMethod::ForkServer;
    hello,
    string_argument,
    four_children_numbers,
    from_run_squares,
    child_fills_pipe,
    child_fills_queue,
    value_counter_four_processes,
    pipe_hello_both_ways,
    handles_as_arguments,
    exitcodes,
    join_timeout_on_sleeping_child,
    start_twice_and_before_start,
    sentinel_becomes_readable,
    parent_process_in_child,
    grandchild_names_and_parent,
    spawn_returns_value_and_panic_message,
    spawn_killed_child_reports_signal,
    large_arguments_and_result,
    result_carries_handles,
    non_capturing_closure_target,
    closures_under_fork,
    cpu_count_honours_affinity,
    default_method_from_environment,
    helper_default_method,
    invalid_method_in_environment,
    daemon_may_not_start_children,
    active_children_reaps,
    daemon_grandchild_terminated_when_child_returns,
    daemon_dies_with_killed_parent,
    lifetimes_at_main_return,
    lifetimes_at_process_exit,
    helper_exit,
    program_without_init,
    helper_no_init,
    no_fd_leak,
    helper_fd_leak,
    forkserver_restarts,
    helper_forkserver_restarts,
    child_fd_count_does_not_grow,
);
