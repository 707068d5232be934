# A Nomad system job running allocd on every client node, from the image deploy/image.sh builds
# (load it on each node with `docker save allocd:0.2.0 | ssh NODE docker load`).
#   nomad job run deploy/allocd.nomad.hcl
# Each agent advertises its node's address and finds the others through etcd (set the
# endpoints below). Its alloc dir is Nomad's, so it serves the allocations Nomad runs there.
job "allocd" {
  type = "system"

  group "allocd" {
    network {
      mode = "host"
      port "http" { static = 4646 }
    }

    task "allocd" {
      driver = "docker"

      config {
        image        = "allocd:0.2.0"
        network_mode = "host"
        args         = ["-http-port", "${NOMAD_PORT_http}"]
        volumes = [
          "local/allocd.hcl:/etc/allocd/allocd.hcl",
          "/opt/nomad/data/alloc:/opt/nomad/data/alloc",
          "/sys/fs/cgroup:/sys/fs/cgroup:ro",
          "/var/run/docker.sock:/var/run/docker.sock",
          "/var/lib/allocd:/var/lib/allocd",
        ]
      }

      template {
        destination = "local/allocd.hcl"
        data        = <<-HCL
          data_dir  = "/var/lib/allocd"
          bind_addr = "0.0.0.0"
          plugin "host-metrics" {}
          plugin "local-disk" { config { alloc_dir = "/opt/nomad/data/alloc" } }
          plugin "cgroup" {}
          plugin "docker" {}
          cluster {
            etcd_endpoints = ["http://etcd-1:2379", "http://etcd-2:2379", "http://etcd-3:2379"]
            advertise      = "http://{{ env "attr.unique.network.ip-address" }}:{{ env "NOMAD_PORT_http" }}"
            lease_ttl      = "10s"
          }
        HCL
      }

      service {
        name     = "allocd"
        port     = "http"
        provider = "nomad"
        check {
          type     = "http"
          path     = "/v1/agent/health"
          interval = "10s"
          timeout  = "2s"
        }
      }

      resources {
        cpu    = 200
        memory = 128
      }
    }
  }
}
