package api

func (a *API) driftRoutes() []Route { return nil }
