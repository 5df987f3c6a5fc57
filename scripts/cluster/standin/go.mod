module dvt-operator/cluster/standin

go 1.26
