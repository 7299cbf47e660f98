module github.com/pulse-rpc/pulse

go 1.26
