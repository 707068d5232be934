# A sample allocd config for a node that runs a custom task driver beside Nomad's own
# allocation directories. Start it with:
#
#   allocd agent -config examples/allocd.hcl
#
# Blocks follow strict HCL2: a one-line block holds at most one attribute.

data_dir  = "/var/lib/allocd"
bind_addr = "127.0.0.1"
ports { http = 4646 }

# Where plugins named without `path` are found (default: the directory of the allocd binary).
plugin_dir = "/usr/lib/allocd"

# How often the metric providers are sampled.
telemetry { collection_interval = "1s" }

# Host memory, CPUs, disks and uptime for GET /v1/client/stats.
plugin "host-metrics" {}

# The allocation files: point it at the Nomad client's alloc_dir to serve the same allocations.
plugin "local-disk" {
  config { alloc_dir = "/opt/nomad/data/alloc" }
}

# The operator's own plugin, shipped outside plugin_dir (see examples/README.md).
plugin "driver-metrics" {
  path            = "/opt/my-driver/liballocd_plugin_driver_metrics.so"
  timeout         = "2s"   # per call; a call that takes longer fails its request (default 10s)
  max_concurrency = 4      # calls in flight at once (default 64)
  config {
    status_file      = "/run/my-driver/status.json"
    cpu_mhz_per_core = 2400   # optional; default: the average of /proc/cpuinfo
  }
}
