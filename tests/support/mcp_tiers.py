"""The tools berth's `/mcp` lists to each tier, for the unit and e2e tests that check the listing."""

READ_TOOLS = {"list_containers", "inspect_container", "search_marketplace", "get_tool_details", "list_installations",
              "list_shared_tools", "list_sandboxes", "service_status"}
STANDARD_TOOLS = READ_TOOLS | {"install_tool", "call_installed_tool", "create_sandbox", "call_sandbox_tool"}
# Admin only, reads included: the infra SSH family (tests/e2e/test_infra_ssh.py runs them).
INFRA_SSH_READS = {"infra_ssh_list_hosts", "infra_ssh_get_host", "infra_ssh_list_actions", "infra_ssh_describe_action",
                   "infra_ssh_lease_status", "infra_ssh_get_run", "infra_ssh_list_runs", "infra_ssh_list_forwards"}
INFRA_SSH_TOOLS = INFRA_SSH_READS | {"infra_ssh_request_lease", "infra_ssh_end_lease", "infra_ssh_run_action",
                                     "infra_ssh_open_forward", "infra_ssh_close_forward"}
ADMIN_TOOLS = STANDARD_TOOLS | {"container_action", "sandbox_action"} | INFRA_SSH_TOOLS
