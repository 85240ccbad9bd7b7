package main

import (
	_ "github.com/eclipse/paho.mqtt.golang"
	_ "github.com/mattn/go-sqlite3"
	_ "github.com/nats-io/nats-server/v2/server"
	_ "github.com/spf13/cobra"
	_ "github.com/yalue/onnxruntime_go"
	_ "github.com/rogpeppe/go-internal/testscript"
)

func main() {}
