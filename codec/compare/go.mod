module github.com/pulse-rpc/pulse/codec/compare

go 1.26

require (
	github.com/pulse-rpc/pulse v0.0.0
	github.com/shamaton/msgpack/v2 v2.4.0
	github.com/vmihailenco/msgpack/v5 v5.4.1
)

require (
	github.com/fxamacker/cbor/v2 v2.9.6 // indirect
	github.com/vmihailenco/tagparser/v2 v2.0.0 // indirect
	github.com/x448/float16 v0.8.4 // indirect
)

replace github.com/pulse-rpc/pulse => ../..
