package pulse

// preferredBinaryCodec is offered first by clients when it is registered.
const preferredBinaryCodec = "cbor"
