package api

func (a *API) eventRoutes() []Route { return nil }
