package api

// LabelAutoRemove on a container ("true") asks the api plugin to remove it
// once it has stopped: `berth run -d --rm`. (A foreground `run --rm` removes
// its container itself.)
const LabelAutoRemove = "org.berth.autoremove"
