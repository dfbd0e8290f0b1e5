"""Earth Engine: connect, find Sentinel-2 L1C/L2A pairs over a region, sample them, export them.

The real data path of s2ac, in three modules:

1. :func:`s2ac.data.earthengine.client.connect` initialises the earthengine-api client from a
   service-account key file or the application default credentials, for a project from config or
   the environment. The API URL is a setting (Google's by default), which is the only thing tests
   change: they point it at a local fake of the REST API, so this package runs unchanged against
   both.
2. :mod:`s2ac.data.earthengine.scenes`: :func:`~s2ac.data.earthengine.scenes.paired_collection`
   pairs ``COPERNICUS/S2_HARMONIZED`` (L1C) with ``COPERNICUS/S2_SR_HARMONIZED`` (L2A) and Cloud
   Score+ on ``system:index`` (joins drop scenes missing either), filtered by dates, region and
   scene cloud share. :func:`~s2ac.data.earthengine.scenes.training_pair` turns one pair into the
   export image: bands B2, B3, B4, B8 of both, renamed to the TFRecord schema (``toa_B2`` ...
   ``sr_B8``), scaled by 1e-4 to reflectance, masked where Cloud Score+ ``cs_cdf`` is below the
   threshold. :func:`~s2ac.data.earthengine.scenes.find_scenes` lists the pairs per stratum (the
   states of a country from a boundary collection such as FAO/GAUL/2015/level1, or the features
   of a GeoJSON file); each scene is assigned to the first stratum it intersects.
   :func:`~s2ac.data.earthengine.scenes.stratified_sample` then draws N of them spread evenly over
   strata, deterministically for a seed.
3. :mod:`s2ac.data.earthengine.export` exports the sampled scenes to Cloud Storage and tracks
   the tasks.

Every request goes through :meth:`s2ac.data.earthengine.client.EarthEngine.call`: HTTP 429 and
5xx are retried with exponential backoff (the client's own retries are switched off, so there is
one policy, logged), and failures become :mod:`s2ac.errors` types that name the request, never a
credential.
"""
