package api

func (a *API) telemetryRoutes() []Route { return nil }
