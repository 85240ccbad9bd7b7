package chunkwire

import (
	"errors"
	"fmt"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"

	agentv1 "github.com/atelier-ml/atelier/proto/agent/v1"
)

// Field numbers of ChunkResponse in proto/agent/v1/agent.proto.
const (
	fieldCorrelationID protowire.Number = 1
	fieldSha256        protowire.Number = 2
	fieldIndex         protowire.Number = 3
	fieldData          protowire.Number = 4
	fieldError         protowire.Number = 5
)

// ErrMalformed is wrapped by Decode's errors.
var ErrMalformed = errors.New("malformed ChunkResponse")

// AppendData appends to dst a ChunkResponse with correlation id corr,
// digest sha, index and n bytes of data, leaving the data bytes for the
// caller to fill: it returns the message and the data's offset in it, so
// msg[off:off+n] is where the chunk goes. dst's spare capacity is reused
// when it suffices. Fields equal to their zero value are omitted, as the
// generated code does.
func AppendData(dst []byte, corr, sha string, index uint32, n int) (msg []byte, off int) {
	dst = appendString(dst, fieldCorrelationID, corr)
	dst = appendString(dst, fieldSha256, sha)
	if index != 0 {
		dst = protowire.AppendTag(dst, fieldIndex, protowire.VarintType)
		dst = protowire.AppendVarint(dst, uint64(index))
	}
	if n > 0 {
		dst = protowire.AppendTag(dst, fieldData, protowire.BytesType)
		dst = protowire.AppendVarint(dst, uint64(n))
		off = len(dst)
		dst = append(dst, make([]byte, n)...)
	}
	return dst, off
}

// Size is the length of the message AppendData builds.
func Size(corr, sha string, index uint32, n int) int {
	s := stringSize(corr) + stringSize(sha)
	if index != 0 {
		s += protowire.SizeTag(fieldIndex) + protowire.SizeVarint(uint64(index))
	}
	if n > 0 {
		s += protowire.SizeTag(fieldData) + protowire.SizeBytes(n)
	}
	return s
}

func appendString(dst []byte, num protowire.Number, s string) []byte {
	if s == "" {
		return dst
	}
	dst = protowire.AppendTag(dst, num, protowire.BytesType)
	return protowire.AppendString(dst, s)
}

func stringSize(s string) int {
	if s == "" {
		return 0
	}
	return protowire.SizeTag(1) + protowire.SizeBytes(len(s))
}

// Decode parses a ChunkResponse. The returned message's Data aliases b, so
// b must not be modified while it is in use. Errors wrap ErrMalformed and
// say which field and where.
func Decode(b []byte) (*agentv1.ChunkResponse, error) {
	r := &agentv1.ChunkResponse{}
	for pos := 0; pos < len(b); {
		num, typ, n := protowire.ConsumeTag(b[pos:])
		if n < 0 {
			return nil, fmt.Errorf("%w: byte %d: bad field tag: %v", ErrMalformed, pos, protowire.ParseError(n))
		}
		if !num.IsValid() {
			return nil, fmt.Errorf("%w: byte %d: field number %d out of range", ErrMalformed, pos, num)
		}
		pos += n
		known := false
		switch num {
		case fieldCorrelationID, fieldSha256, fieldData, fieldError:
			known = typ == protowire.BytesType
		case fieldIndex:
			known = typ == protowire.VarintType
		}
		if !known {
			// An unknown field, or a known one with another wire type
			// (which the generated code also keeps as unknown).
			n = protowire.ConsumeFieldValue(num, typ, b[pos:])
			if n < 0 {
				return nil, fmt.Errorf("%w: byte %d: field %d: %v", ErrMalformed, pos, num, protowire.ParseError(n))
			}
			pos += n
			continue
		}
		if num == fieldIndex {
			v, n := protowire.ConsumeVarint(b[pos:])
			if n < 0 {
				return nil, fmt.Errorf("%w: byte %d: index: %v", ErrMalformed, pos, protowire.ParseError(n))
			}
			r.Index = uint32(v)
			pos += n
			continue
		}
		v, n := protowire.ConsumeBytes(b[pos:])
		if n < 0 {
			return nil, fmt.Errorf("%w: byte %d: field %d: %v", ErrMalformed, pos, num, protowire.ParseError(n))
		}
		pos += n
		if num == fieldData {
			r.Data = v[:len(v):len(v)]
			continue
		}
		if !utf8.Valid(v) {
			return nil, fmt.Errorf("%w: byte %d: field %d is a string but not valid UTF-8", ErrMalformed, pos-len(v), num)
		}
		switch num {
		case fieldCorrelationID:
			r.CorrelationId = string(v)
		case fieldSha256:
			r.Sha256 = string(v)
		case fieldError:
			r.Error = string(v)
		}
	}
	return r, nil
}
