module probe.dev/testdata

go 1.21
