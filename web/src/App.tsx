// Routes: the sign-in page until a token is accepted, then the dashboard's pages inside the
// layout, all sharing one live WebSocket connection.

import { Navigate, Route, Routes } from "react-router-dom";
import { useAuth } from "./auth/AuthContext";
import { Layout } from "./components/Layout";
import { LiveProvider } from "./live/LiveProvider";
import { Dashboard } from "./pages/Dashboard";
import { ExchangeKeys } from "./pages/ExchangeKeys";
import { RiskSettings } from "./pages/RiskSettings";
import { Signals } from "./pages/Signals";
import { SignIn } from "./pages/SignIn";
import { Trades } from "./pages/Trades";
import { Webhook } from "./pages/Webhook";

export function App() {
  const { token } = useAuth();
  if (!token) return <SignIn />;
  return (
    <LiveProvider token={token}>
      <Layout>
        <Routes>
          <Route path="/" element={<Dashboard />} />
          <Route path="/signals" element={<Signals />} />
          <Route path="/trades" element={<Trades />} />
          <Route path="/risk" element={<RiskSettings />} />
          <Route path="/exchange-keys" element={<ExchangeKeys />} />
          <Route path="/webhook" element={<Webhook />} />
          <Route path="*" element={<Navigate to="/" replace />} />
        </Routes>
      </Layout>
    </LiveProvider>
  );
}
